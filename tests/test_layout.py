"""The server's modules import each other in one direction: no cycle, not even one that
only type checking or a function-level import would follow.

A cycle is how "the ASGI plumbing lives in the app, and the doors need the plumbing" hides;
read from the source (every ``import`` statement, wherever it is), so a lazy import cannot
hide one either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports_within(package: str) -> dict[str, set[str]]:
    """module -> the modules of ``package`` it imports anywhere in its source."""
    names = {p.stem for p in (ROOT / package).glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name in names:
        tree = ast.parse((ROOT / package / f"{name}.py").read_text())
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module is None:  # from . import a, b
                    found.update(a.name for a in node.names if a.name in names)
                elif node.level == 1 and node.module is not None:
                    found.add(node.module.split(".")[0])
                elif node.level == 0 and node.module and node.module.startswith(f"{package}."):
                    found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names
                             if a.name.startswith(f"{package}."))
        graph[name] = found & names - {name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", ["server", "transports"])
def test_no_import_cycle(package: str) -> None:
    graph = imports_within(package)
    assert "app" in graph or package != "server"  # the walk found the modules
    assert cycle(graph) is None, f"import cycle in {package}/: {' -> '.join(cycle(graph) or [])}"


def test_the_asgi_plumbing_imports_nothing_of_the_server() -> None:
    assert imports_within("server")["asgi"] == set()
