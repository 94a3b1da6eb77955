"""The package's modules import one another in one direction: no cycle, even for typing.

Every ``import`` and ``from ... import`` of every module under ``forgeflow/`` is read
with ``ast`` (those under ``if TYPE_CHECKING:`` and inside functions included), which
gives the graph of module dependencies; it must have no cycle. A package is not counted
as a dependency of its own submodules (Python imports it first, whatever they import).
"""

from __future__ import annotations

import ast
from pathlib import Path

import forgeflow

PACKAGE = Path(forgeflow.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The forgeflow modules that module ``name`` (at ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                # `from . import _waits` names a module; `from ._x import y` a member.
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in known else source)
    return {module for module in found if module in known and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph[module]):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            cycle = visit(module)
            if cycle is not None:
                return cycle
    return None


def test_the_import_graph_reads_every_kind_of_import() -> None:
    """Relative, absolute, typing-only and subpackage imports all become edges."""
    graph = _graph()
    assert "forgeflow._journal" in graph["forgeflow._context"]  # from ._journal import ...
    assert "forgeflow._waits" in graph["forgeflow._context"]  # from . import _waits
    assert "forgeflow._store" in graph["forgeflow._runstate"]  # under TYPE_CHECKING
    assert "forgeflow._context" in graph["forgeflow.testing._context"]  # from .._context
    assert "forgeflow._dashboard.pages" in graph["forgeflow.http"]  # from ._dashboard import pages


def test_the_cycle_finder_names_a_cycle() -> None:
    """A graph with a cycle is reported with the modules on it, in import order."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_the_package_imports_itself_through_others() -> None:
    """forgeflow, forgeflow._dashboard and forgeflow.testing have no import cycle."""
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
