"""The project's structure, read from its imports: one-way layers (ntk_rnn <- analysis <- figures <- the main
job in figures.suite, and within ntk_rnn its folders bottom up), no import cycle, no module reaching into
another's underscore names, no module past 450 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ntk_rnn", "analysis", "figures")
MAX_LINES = 450
FORBIDDEN = {  # layer -> what it must not import (prefixes)
    "ntk_rnn": ("analysis", "figures", "matplotlib", "seaborn"),
    "analysis": ("figures", "matplotlib", "seaborn"),
    "figures": ("figures.suite",),  # figure functions know nothing of the job that runs them
}


# ntk_rnn's own layers, bottom up: each folder imports only the folders before it (and ntk_rnn.storage)
CORE_LAYERS = ("network", "frameworks", "batching", "kernels", "eigen", "training", "apps")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _imports(name: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import statement, at any depth."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:
                    found.append((submodule, [], node.lineno))
                else:
                    found.append((base, [alias.name], node.lineno))
    return found


GRAPH = {name: {m for m, _, _ in _imports(name) if m in MODULES and m != name} for name in MODULES}


def test_the_project_has_the_modules_this_test_reads():
    assert {"ntk_rnn.network.model", "ntk_rnn.kernels.empirical", "analysis.sweep", "figures.style"} <= set(MODULES)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downwards(layer):
    bad = [
        f"{name}:{line} imports {module}"
        for name in MODULES
        if name == layer or name.startswith(layer + ".")
        if not (layer == "figures" and name.startswith("figures.suite"))
        for module, _, line in _imports(name)
        if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[layer])
    ]
    assert not bad, bad


def test_ntk_rnn_folders_import_only_the_layers_below():
    bad = []
    for name in MODULES:
        parts = name.split(".")
        if parts[0] != "ntk_rnn" or len(parts) < 3 or parts[1] not in CORE_LAYERS:
            continue
        allowed = set(CORE_LAYERS[: CORE_LAYERS.index(parts[1]) + 1])
        for module, _, line in _imports(name):
            target = module.split(".")
            if target[0] == "ntk_rnn" and len(target) > 1 and target[1] in CORE_LAYERS and target[1] not in allowed:
                bad.append(f"{name}:{line} imports {module}")
    assert not bad, bad
    assert {name.split(".")[1] for name in MODULES if name.startswith("ntk_rnn.") and name.count(".") >= 2} == set(
        CORE_LAYERS
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_project_modules():
    assert _cycles(GRAPH) == []


def test_no_module_imports_another_modules_private_names():
    bad = []
    for name in MODULES:
        imported_modules = {}
        for module, names, line in _imports(name):
            bad += [f"{name}:{line} imports {module}.{n}" for n in names if n.startswith("_") and module in MODULES]
        tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in MODULES:
                        imported_modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname:
                        imported_modules[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in imported_modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):  # fmt: skip
                bad.append(f"{name}:{node.lineno} uses {imported_modules[node.value.id]}.{node.attr}")
    assert not bad, bad


def test_no_module_is_longer_than_450_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long
