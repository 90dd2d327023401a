"""The API reference (docs/api/*.md) documents the whole public API, and its directives point at real objects.

The pages are mkdocstrings directives, `::: module.path` or `::: module.object`, each with an optional YAML
`options:` block. A directive covers its target and the members it renders: those of its `members:` list, or,
without a list, a module's public names (its __all__, else the names defined in it; `members: false` or `[]`
renders none). Checked without building the site: every name of ntk_rnn.__all__ is covered, every target and
listed member exists where the directive says (a member imported into a module, or inherited by a class, is not
rendered there), and the reference's index lists every name.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import textwrap
import types
from pathlib import Path

import pytest
import yaml

import ntk_rnn

sys.path.insert(0, str(Path(__file__).parent))
from dotted import resolve

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api"
PAGES = sorted(API.glob("*.md"))


def directives(page: Path) -> list[tuple[str, dict]]:
    """(target, options) of each `::: target` line of a page; its options are the indented YAML below it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        if not line.startswith(":::"):
            continue
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and not following[0].isspace():
                break
            block.append(following)
        config = yaml.safe_load(textwrap.dedent("\n".join(block))) or {}
        found.append((line[3:].strip(), config.get("options") or {}))
    return found


DIRECTIVES = [(page, target, options) for page in PAGES for target, options in directives(page)]


@functools.cache
def assigned(module: types.ModuleType) -> frozenset[str]:
    """The names a module's own top-level statements assign (constants have no __module__ to tell)."""
    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names.update(target.id for target in targets if isinstance(target, ast.Name))
    return frozenset(names)


def defined_in(owner, name: str) -> bool:
    """Whether `name` is documented with `owner`: defined in that module (not imported), or in the class itself."""
    if isinstance(owner, types.ModuleType):
        value = getattr(owner, name)
        if isinstance(value, types.ModuleType):
            return False
        if inspect.isclass(value) or inspect.isroutine(inspect.unwrap(value)):
            return inspect.unwrap(value).__module__ == owner.__name__
        return name in assigned(owner)
    return name in vars(owner)


def public_names(module: types.ModuleType) -> list[str]:
    """What mkdocstrings renders of a module without a members list."""
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return list(exported)
    return [name for name in vars(module) if not name.startswith("_") and defined_in(module, name)]


def covered(target: str, options: dict) -> list:
    """The objects a directive documents: its target and the members it renders."""
    obj = resolve(target)
    members = options.get("members")
    if members is None and isinstance(obj, types.ModuleType):
        members = public_names(obj)
    if not isinstance(members, list):  # True (every member: not used here) or False
        members = []
    return [obj, *(getattr(obj, name) for name in members)]


def test_pages_have_directives():
    assert {page.name for page in PAGES} >= {"index.md", "network.md", "kernels.md"}
    assert DIRECTIVES, "no ::: directive in docs/api"


@pytest.mark.parametrize(("page", "target", "options"), DIRECTIVES, ids=[f"{p.name}:{t}" for p, t, _ in DIRECTIVES])
def test_directive_resolves(page, target, options):
    where = f"docs/api/{page.name}: ::: {target}"
    obj = resolve(target)
    if obj is None:
        pytest.fail(f"{where} does not resolve")
    members = options.get("members")
    if isinstance(members, list):
        missing = [name for name in members if not hasattr(obj, name)]
        assert not missing, f"{where}: members {missing} do not exist"
        elsewhere = [name for name in members if not defined_in(obj, name)]
        assert not elsewhere, f"{where}: members {elsewhere} are imported or inherited, documented where defined"


def test_every_public_name_is_documented():
    documented = []
    for _, target, options in DIRECTIVES:
        try:
            documented.extend(covered(target, options))
        except (ImportError, AttributeError):
            continue  # test_directive_resolves reports it
    missing = [name for name in ntk_rnn.__all__ if not any(getattr(ntk_rnn, name) is obj for obj in documented)]
    assert not missing, f"ntk_rnn.__all__ names in no ::: directive or members list of docs/api/*.md: {missing}"


def test_index_lists_every_public_name():
    index = (API / "index.md").read_text(encoding="utf-8")
    missing = [name for name in ntk_rnn.__all__ if f"[`{name}`]" not in index]
    assert not missing, f"docs/api/index.md does not list: {missing}"
