"""The package's layers, read from the source (docs/architecture.md): the foundation imports no stage, each stage
imports only the stages below it, no stage imports the app, there are no import cycles (counting imports inside
functions), and an import inside a function says in a comment which optional or heavy dependency it defers."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"capture": "nerfstage.capture", "nerf": "nerfstage.nerf", "render": "nerfstage.render",
           "export": "nerfstage.export", "nerfstage": "nerfstage"}
"""Source folder -> the package it installs as (pyproject's package-dir mapping)."""
ALLOWED = {
    "nerfstage.core": set(),
    "nerfstage.capture": {"nerfstage.core"},
    "nerfstage.nerf": {"nerfstage.core", "nerfstage.capture"},
    "nerfstage.render": {"nerfstage.core", "nerfstage.capture", "nerfstage.nerf"},
    "nerfstage.export": {"nerfstage.core", "nerfstage.capture", "nerfstage.nerf", "nerfstage.render"},
}
"""Layer -> the layers it may import (besides itself). The app (``nerfstage.app``) may import everything."""


@dataclass(frozen=True)
class Import:
    source: str
    """Importing module."""
    target: str
    """Imported nerfstage module (or package)."""
    line: int
    """Line of the import statement."""
    in_function: bool
    """Whether the statement sits inside a function."""
    text: str
    """The source line."""


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO)
    parts = [FOLDERS[relative.parts[0]], *relative.parts[1:]]
    name = ".".join(parts)[: -len(".py")]
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def library_files() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (REPO / folder).rglob("*.py"))


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """Line numbers of statements under ``if TYPE_CHECKING:`` (not imported at run time)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _targets(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.startswith("nerfstage")]
    package = module if is_package else module.rpartition(".")[0]
    if node.level:
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    if not target.startswith("nerfstage"):
        return []
    subs = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known]
    return subs or [target]


def imports() -> list[Import]:
    files = library_files()
    known = {module_name(p) for p in files}
    found = []
    for path in files:
        source = path.read_text(encoding="utf-8")
        tree, lines = ast.parse(source), source.splitlines()
        skip = _type_checking_blocks(tree)
        inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        module = module_name(path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno not in skip:
                for target in _targets(node, module, path.name == "__init__.py", known):
                    found.append(Import(module, target, node.lineno, id(node) in inner, lines[node.lineno - 1]))
    return found


def layer(module: str) -> str:
    for name in ("nerfstage.core", "nerfstage.app", *ALLOWED):
        if module == name or module.startswith(name + "."):
            return name
    return "nerfstage"


def test_every_layer_imports_only_the_layers_below_it():
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in imports()
           if layer(i.source) in ALLOWED and layer(i.target) not in ALLOWED[layer(i.source)] | {layer(i.source)}]
    assert not bad, "\n".join(bad)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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


def test_no_import_cycles_even_through_imports_inside_functions():
    graph: dict[str, set[str]] = {}
    for i in imports():
        if i.target != i.source:
            graph.setdefault(i.source, set()).add(i.target)
    assert strongly_connected(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def deferred_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every import statement inside a function of ``path``."""
    source = path.read_text(encoding="utf-8")
    tree, lines = ast.parse(source), source.splitlines()
    found = set()
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found.add((node.lineno, lines[node.lineno - 1]))
    return sorted(found)


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_inside_functions_say_what_they_defer(path):
    unexplained = [f"{path.relative_to(REPO)}:{line}: {text.strip()}" for line, text in deferred_imports(path)
                   if "#" not in text]
    assert not unexplained, "an import inside a function needs a comment naming the optional or heavy " \
                            "dependency it defers:\n" + "\n".join(unexplained)
