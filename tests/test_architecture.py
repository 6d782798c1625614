"""The shape of the code base (docs/ARCHITECTURE.md): core/ is a plain library of packages without import circles,
modules stay small enough to hold one concern, pages stay layout only, and every shipped model loads through the
packages it was saved with (custom layers registered from core.models.layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

CORE = PROJECT_ROOT / "core"
MAX_MODULE_LINES = 500
MAX_PAGE_LINES = 250
KERAS_LAYER_MODULES = {"core/models/layers.py"}  # a registered Keras layer subclasses keras.layers.Layer at import


def module_name(path: Path) -> str:
    """core/guard/_verdict.py -> core.guard._verdict; core/guard/__init__.py -> core.guard."""
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(CORE.rglob("*.py"))}


def imported_core_modules(path: Path, known: dict[str, Path]) -> set[str]:
    """Every core module `path` imports, at the top or inside a function (lazy imports count: they close circles too)."""
    found: set[str] = set()

    def nearest(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "core":
            for alias in node.names:
                found.add(nearest(f"{node.module}.{alias.name}") or "")
        elif isinstance(node, ast.Import):
            found.update(nearest(alias.name) or "" for alias in node.names if alias.name.split(".")[0] == "core")
    found.discard("")
    found.discard(module_name(path))
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (iterative depth-first search with colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 unvisited, 1 on the stack, 2 done
    for start in graph:
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child, 2) == 1:
                return path[path.index(child):] + [child]
            elif colour.get(child, 2) == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_the_cycle_finder_finds_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_core_has_no_import_circle():
    known = core_modules()
    graph = {name: imported_core_modules(path, known) for name, path in known.items()}
    assert len(graph) > 40, "core/ was not found or not parsed"
    cycle = find_cycle(graph)
    assert cycle is None, "Import circle: " + " -> ".join(cycle)


def test_core_never_imports_streamlit_and_imports_tensorflow_only_inside_functions():
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name.split(".")[0] == "streamlit" for name in names), f"{path} imports Streamlit"
        if path.relative_to(PROJECT_ROOT).as_posix() in KERAS_LAYER_MODULES:
            continue
        for node in tree.body:  # module level only
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name.split(".")[0] in {"tensorflow", "keras"} for name in names), (
                f"{path} imports TensorFlow at module level; import it inside the function that needs it")


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_core_module_holds_one_concern(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines (> {MAX_MODULE_LINES}): split it by concern"


@pytest.mark.parametrize("path", sorted((PROJECT_ROOT / "pages").glob("*.py")), ids=lambda p: p.name)
def test_every_page_is_layout_sized(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_PAGE_LINES, f"{path.name} has {lines} lines (> {MAX_PAGE_LINES}): move pieces into ui/ or core/"


def test_every_package_names_its_api_in_its_init():
    for package in sorted(p for p in CORE.iterdir() if (p / "__init__.py").exists()):
        text = (package / "__init__.py").read_text()
        assert ast.get_docstring(ast.parse(text)), f"{package.name}/__init__.py has no docstring saying what it is for"
