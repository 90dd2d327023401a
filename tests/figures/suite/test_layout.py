"""The package's shape: one concept per module, imports in one direction only (no cycle), nothing private
imported across modules, no import hidden inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import figures.suite

PACKAGE = Path(figures.suite.__file__).parent
# each module may import only those before it
ORDER = ("registry", "overrides", "cache", "outcomes", "report", "runner", "catalogue", "cli", "__init__", "__main__")


def _suite_imports(tree: ast.Module) -> list[tuple[ast.AST, str, list[str]]]:
    """(node, figures.suite module imported, names taken from it) for every import of the package's modules."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "figures.suite":
            found += [(node, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("figures.suite."):
            found.append((node, node.module.removeprefix("figures.suite."), [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node, a.name.removeprefix("figures.suite."), []) for a in node.names
                      if a.name.startswith("figures.suite.")]  # fmt: skip
    return found


def test_the_modules_import_in_one_direction_and_nothing_private():
    modules = sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert sorted(ORDER) == modules, "a module is missing from ORDER or ORDER names one that is gone"
    for name in modules:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        top_level = {id(node) for node in tree.body}
        for node, target, names in _suite_imports(tree):
            where = f"{name}.py:{node.lineno} imports {target}"
            assert target in ORDER, where
            assert ORDER.index(target) < ORDER.index(name), f"{where}, which comes after it"
            assert id(node) in top_level, f"{where} inside a function or block"
            assert not [n for n in names if n.startswith("_")], f"{where}'s private {names}"


def test_every_module_is_well_under_450_lines():
    lengths = {path.name: len(path.read_text().splitlines()) for path in PACKAGE.glob("*.py")}
    assert max(lengths.values()) < 450, lengths
