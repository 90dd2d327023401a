"""The README's examples run: every python block of the sections listed here is executed as it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SECTIONS = ("Your model",)


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of the README's `## section`, dedented."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README.md has no section '## {section}'"
    return re.findall(r"^```python\n(.*?)^```", match.group(1), flags=re.M | re.S)


@pytest.mark.parametrize(("section", "index"), [(s, i) for s in SECTIONS for i in range(len(python_blocks(s)))])
def test_readme_example_runs(section, index):
    code = python_blocks(section)[index]
    exec(compile(code, f"README.md ## {section} block {index}", "exec"), {"__name__": "readme"})
