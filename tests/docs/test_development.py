"""docs/development.md's table of where each module is tested is true, and lists every module."""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from dotted import module_of

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "development.md"
PACKAGES = ("ntk_rnn", "analysis", "figures")
ROW = re.compile(r"^\| `([\w.]+)` \| (.*) \|$", flags=re.M)
ENTRY = re.compile(r"`(tests/[\w/]+\.py)`(?: through `([\w.]+)`)?")


def project_modules() -> set[str]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }


def table() -> dict[str, list[tuple[str, str | None]]]:
    """module -> [(test file, the module it is reached through, or None)]."""
    section = PAGE.read_text(encoding="utf-8").split("## Where each module is tested", 1)[1]
    return {module: ENTRY.findall(cells) for module, cells in ROW.findall(section)}


@cache
def referenced(test: str) -> frozenset[str]:
    """The project modules a test file imports, imports names from, or uses as attributes of an import."""
    tree = ast.parse((ROOT / test).read_text(encoding="utf-8"))
    aliases: dict[str, str] = {}
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    found.add(alias.name)
                    bound = alias.asname or alias.name.split(".")[0]  # `import a.b` binds a; `import a.b as c` binds c
                    aliases[bound] = alias.name if alias.asname else bound
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                found.add(module_of(f"{node.module}.{alias.name}"))
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [], node
            while isinstance(base, ast.Attribute):
                chain.insert(0, base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.add(module_of(".".join([aliases[base.id], *chain])))
    return frozenset(m for m in found if m)


def mentions(test: str, module: str) -> bool:
    return module in referenced(test) or re.search(rf"\b{re.escape(module)}\b", (ROOT / test).read_text()) is not None


@cache
def imports_of(module: str) -> frozenset[str]:
    """The project modules `module` imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        path = ROOT / (todo.pop().replace(".", "/") + ".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if (ROOT / (name.replace(".", "/") + ".py")).exists() and name not in seen:
                    seen.add(name)
                    todo.append(name)
    return frozenset(seen)


def test_every_module_is_listed():
    listed, modules = set(table()), project_modules()
    assert not modules - listed, f"docs/development.md does not say where these are tested: {modules - listed}"
    assert not listed - modules, f"docs/development.md lists modules that do not exist: {listed - modules}"


@pytest.mark.parametrize("module", sorted(table()))
def test_listed_tests_exercise_the_module(module):
    entries = table()[module]
    assert entries, f"docs/development.md names no test for {module}"
    for test, through in entries:
        assert (ROOT / test).exists(), f"{test} does not exist"
        if through:
            assert mentions(test, through), f"{test} does not use {through}"
            assert module in imports_of(through), f"{through} does not import {module}"
        else:
            assert mentions(test, module), f"{test} neither imports nor names {module}"


def test_the_check_can_fail():
    assert not mentions("tests/ntk_rnn/test_dual.py", "ntk_rnn.apps.probes")
    assert mentions("tests/ntk_rnn/test_distributed.py", "ntk_rnn.eigen.sharded")  # in a subprocess's code
    assert "ntk_rnn.kernels.structured" in imports_of("ntk_rnn.kernels.empirical")
    assert "figures.classification" not in imports_of("ntk_rnn.kernels.empirical")
