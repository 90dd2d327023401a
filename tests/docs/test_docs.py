"""The documentation is true: its examples run, and the paths, names, signatures and commands it quotes exist.

Checked pages: the READMEs and every page of the site but the API reference, which mkdocstrings generates from
the code itself. A page's Python blocks run in order in one namespace, in a temporary directory, as a reader would
run them. A block may be preceded by `<!-- test: `old` -> `new` -->` lines: the test runs it with `old` replaced
by `new` (a smaller size, a file of its own), and the page's text says so. Every such `old` must occur in the block.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import shlex
import sys
import unicodedata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from dotted import resolve

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "reference" / "README.md",
         *sorted(p for p in (ROOT / "docs").rglob("*.md") if p.parent.name != "api")]  # fmt: skip
PACKAGES = ("ntk_rnn", "analysis", "figures")
# paths the docs name that the main job or a command writes, not files of the repository
GENERATED = {"figures/report.html", "site/", "results/suite.json"}

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", flags=re.M | re.S)
SUBSTITUTION = re.compile(r"<!-- test: `(.*?)` -> `(.*?)` -->")
INLINE = re.compile(r"(?<!`)`([^`]+?)`(?!`)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def blocks(page: Path, language: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The page's fenced blocks in `language`, each with the substitutions written just above it."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) != language:
            continue
        above = text[: match.start()].rstrip("\n").split("\n")
        subs = []
        while above and SUBSTITUTION.fullmatch(above[-1].strip()):
            subs.insert(0, SUBSTITUTION.fullmatch(above.pop().strip()).groups())
        found.append((match.group(2), subs))
    return found


def prose(page: Path) -> str:
    """The page without its fenced blocks and its comments."""
    return re.sub(r"<!--.*?-->", "", FENCE.sub("", page.read_text(encoding="utf-8")), flags=re.S)


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=rel)
def test_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "docs_example"}
    for index, (code, subs) in enumerate(blocks(page, "python")):
        for old, new in subs:
            assert old in code, f"{rel(page)} block {index}: the test's substitution '{old}' is not in the block"
            code = code.replace(old, new)
        exec(compile(code, f"{rel(page)} python block {index}", "exec"), namespace)


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "toml")], ids=rel)
def test_toml_examples_are_valid_overrides(page, tmp_path):
    """A ```toml block is a --config file: its studies and fields exist and their values have the right types."""
    from figures.suite.overrides import effective_configs, load_overrides

    for index, (code, _) in enumerate(blocks(page, "toml")):
        path = tmp_path / f"block{index}.toml"
        path.write_text(code, encoding="utf-8")
        effective_configs("quick", load_overrides(path), source=str(path))


def shell_commands(page: Path) -> list[list[str]]:
    """The commands of the page's ```bash blocks, split like a shell would, comments and `srun` dropped."""
    commands = []
    for code, _ in blocks(page, "bash"):
        for line in code.splitlines():
            words = shlex.split(line, comments=True)
            for stop in (">", "<", "|", "&&", ";"):  # what the shell does with the output is not the command's
                words = words[: words.index(stop)] if stop in words else words
            if words and words[0] == "srun":
                words = words[1:]
            if words:
                commands.append(words)
    return commands


@pytest.mark.parametrize("page", [p for p in PAGES if shell_commands(p)], ids=rel)
def test_shell_commands_exist(page):
    """`ntk-rnn ...` parses with the script's own parser; `make X` is a Makefile target; files run exist."""
    from figures.suite.cli import build_parser

    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    for words in shell_commands(page):
        if words[0] == "ntk-rnn":
            if words[1:] != ["--help"]:
                try:
                    build_parser().parse_args(words[1:])
                except SystemExit:  # argparse printed which argument is wrong
                    pytest.fail(f"{rel(page)}: `{' '.join(words)}` does not parse (see the captured stderr)")
        elif words[0] == "make":
            assert set(words[1:]) <= targets, f"{rel(page)}: {' '.join(words)}: no such target in the Makefile"
        elif words[0].startswith(("python", ".venv/bin/python")) and words[1] == "-m":
            assert importlib.util.find_spec(words[2]), f"{rel(page)}: no module {words[2]}"
        elif words[0].endswith(".py") or words[0].startswith((".ci/", "benchmarks/")):
            assert (ROOT / words[0]).exists(), f"{rel(page)}: {words[0]} does not exist"


def quoted(page: Path) -> list[str]:
    """The inline code spans of the page's prose and tables, a span broken over lines joined again."""
    return [re.sub(r"\s*\n\s*", " ", span) for span in INLINE.findall(prose(page)) if "\n\n" not in span]


def looks_like_path(span: str) -> bool:
    """A repository path: a/b... whose first part is one of the repository's own top-level entries."""
    top = span.split("/")[0]
    return (
        "/" in span
        and re.fullmatch(r"[\w.\-/]+", span) is not None
        and top not in ("", ".", "..")
        and ((ROOT / top).exists() or top in (".ci", "tests", "docs"))
    )


def slug(heading: str) -> str:
    """Python-Markdown's toc anchor of a heading (what MkDocs links to)."""
    text = unicodedata.normalize("NFKD", re.sub(r"<[^>]+>|`", "", heading)).encode("ascii", "ignore").decode()
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def anchors(page: Path) -> set[str]:
    found = set()
    for heading in re.findall(r"^#+ (.*)$", prose(page), flags=re.M):
        explicit = re.search(r"\{\s*#([\w-]+)\s*\}\s*$", heading)
        found.add(explicit.group(1) if explicit else slug(heading))
    return found


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_named_paths_exist(page):
    missing = []
    for span in quoted(page):
        candidate = span.rstrip("/") + ("/" if span.endswith("/") else "")
        if looks_like_path(span) and candidate not in GENERATED and not (ROOT / span).exists():
            missing.append(span)
    for target in LINK.findall(prose(page)):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            missing.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            missing.append(f"{target} (no such heading)")
    assert not missing, f"{rel(page)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_named_objects_exist(page):
    pattern = re.compile(rf"(?:{'|'.join(PACKAGES)})(?:\.\w+)+")
    missing = [span for span in quoted(page) if pattern.fullmatch(span) and resolve(span) is None]
    assert not missing, f"{rel(page)} names objects that do not exist: {missing}"


def project_callables() -> dict[str, object]:
    """Every public function and class defined in the project's modules, by its bare name."""
    found: dict[str, object] = {}
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if ".frameworks." in info.name or info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if (not name.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == info.name
                        and name not in found):  # fmt: skip
                    found[name] = obj
    for name in ("from_torch", "to_torch", "from_flax", "from_equinox"):
        found[name] = getattr(importlib.import_module("ntk_rnn"), name)
    return found


CALL = re.compile(r"((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)\((.*)\)(?:\s*(?:->|→).*)?", flags=re.S)


def split_arguments(text: str) -> list[str]:
    """The comma-separated items of an argument list, commas inside brackets and strings kept."""
    items, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(current.strip())
            current = ""
            continue
        current += char
    return [*items, current.strip()] if current.strip() or items else items


def check_call(text: str, fn) -> str | None:
    """Why the quoted call `text` does not match fn's signature, or None.

    Items may be `...` (arguments left out), `*` (keyword-only from here) and `name=` (a keyword with its value
    left out). A quote of bare names only, or one that starts with the code's own first parameter names and has
    literal (or empty) keywords, is read as a signature: its names must be the code's, in the code's order, leaving
    out no parameter between two quoted ones except keyword-only ones or where it writes `...`, and its defaults
    must be the code's. Anything else is a call, which must bind to the signature."""
    items = split_arguments(CALL.fullmatch(text.strip()).group(2))
    parsed = []  # (kind, name, value node): kind in "pos", "kw", "...", "*"
    for item in items:
        if item in ("...", "*"):
            parsed.append((item, None, None))
            continue
        keyword = re.fullmatch(r"([A-Za-z_]\w*)\s*=(?!=)\s*(.*)", item, flags=re.S)
        try:
            value = ast.parse(keyword.group(2) if keyword else item, mode="eval").body if (
                not keyword or keyword.group(2)) else None  # fmt: skip
        except SyntaxError:
            return f"'{item}' is not a valid argument"
        parsed.append(("kw", keyword.group(1), value) if keyword else ("pos", None, value))
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    names = [p.name for p in params]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    for kind, name, _ in parsed:
        if kind == "kw" and name not in names:
            return f"no parameter '{name}' (the code has {names})"
    positional = [value for kind, _, value in parsed if kind == "pos"]
    takes = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    elided = any(kind in ("...", "*") for kind, _, _ in parsed)
    if not elided and not any(p.kind is p.VAR_POSITIONAL for p in params) and len(positional) > len(takes):
        return f"{len(positional)} positional arguments, the code takes {len(takes)}"
    keywords_literal = all(value is None or _is_literal(value) for kind, _, value in parsed if kind == "kw")
    names_only = all(isinstance(value, ast.Name) for value in positional)
    has_keywords = any(kind != "pos" for kind, _, _ in parsed)
    leading = [getattr(value, "id", None) for kind, _, value in parsed[: len(positional)] if kind == "pos"]
    code_names = leading == names[: len(leading)]
    if not (positional and names_only and keywords_literal and (code_names or not has_keywords)):
        return None  # a call with values, not a quoted signature: binding it was the check
    previous, keyword_only = -1, False
    for kind, name, value in parsed:
        if kind == "...":
            previous = None
            continue
        if kind == "*":
            keyword_only = True
            continue
        name = value.id if kind == "pos" else name
        if name not in names:
            return f"no parameter '{name}' (the code has {names})"
        at = names.index(name)
        if previous is not None and at != previous + 1:
            skipped = params[previous + 1 : at]
            if at < previous or any(p.kind is not p.KEYWORD_ONLY for p in skipped):
                return f"'{name}' is not where the code has it: the code's parameters are {names}"
        previous = at
        if keyword_only and params[at].kind is not params[at].KEYWORD_ONLY:
            return f"'{name}' is quoted keyword-only but is not in the code"
        given = kind == "kw" and value is not None and not (isinstance(value, ast.Constant) and value.value is ...)
        default = params[at].default
        if given and default is not inspect.Parameter.empty and default != ast.literal_eval(value):
            return f"'{name}' defaults to {default!r} in the code, not {ast.unparse(value)}"
    return None


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def callables():
    return project_callables()


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_quoted_signatures_match(page, callables):
    wrong = []
    for span in quoted(page):
        match = CALL.fullmatch(span.strip())
        if not match:
            continue
        name = match.group(1)
        fn = resolve(name) if "." in name and name.split(".")[0] in PACKAGES else callables.get(name.split(".")[-1])
        if fn is None or not callable(fn):
            continue
        problem = check_call(span, fn)
        if problem:
            wrong.append(f"`{span}`: {problem}")
    assert not wrong, f"{rel(page)} quotes calls that do not match the code:\n" + "\n".join(wrong)


def test_the_checks_catch_what_they_should(callables):
    """The four errors found in the README once, each of a kind the tests above must catch."""
    product_norms = callables["product_norms"]
    full = "product_norms(cfg, params, x, start=1, sample=0, tol=1e-10, distances=None)"
    assert check_call(full, product_norms) is None
    assert check_call("product_norms(cfg, params, x, start=1, ..., distances=None)", product_norms) is None
    assert "not where the code has it" in check_call("product_norms(cfg, params, x, start=1, distances=None)",
                                                     product_norms)  # fmt: skip
    assert "defaults to" in check_call("product_norms(cfg, params, x, start=2)", product_norms)
    assert "no parameter" in check_call("product_norms(cfg, params, x, begin=1)", product_norms)
    assert check_call("limit_ntk(cfg, x1, x2=None, positions=None, *, key=None, samples=8192)",
                      callables["limit_ntk"]) is None  # fmt: skip
    assert "keyword-only" in check_call("limit_ntk(cfg, x1, *, x2=None)", callables["limit_ntk"])
    moments = "ensemble_moments(ntk_train, ntk_test_train, y, nngp_train, nngp_test_train, nngp_test_diag, ridge)"
    assert "no parameter 'y'" in check_call(moments, callables["ensemble_moments"])  # a renamed argument
    assert check_call('RNNConfig(m, d_x, activation="erf", readout="last")', callables["RNNConfig"]) is None  # a call
    assert "no parameter" in check_call('RNNConfig(m, d_x, readouts="last")', callables["RNNConfig"])
    assert looks_like_path("tests/test_oracle.py") and not (ROOT / "tests/test_oracle.py").exists()
    assert looks_like_path("tests/ntk_rnn/test_oracle.py") and (ROOT / "tests/ntk_rnn/test_oracle.py").exists()
    assert resolve("ntk_rnn.apps.probes.product_norms") is product_norms
    assert resolve("ntk_rnn.kernels.limit.no_such_function") is None
    with pytest.raises(NameError):  # an example that uses a module it never imports fails when it runs
        exec(compile("optimizer = optax.sgd(1e-3)", "example", "exec"), {})
