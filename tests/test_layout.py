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


def test_every_private_core_module_is_banned_outside_the_core() -> None:
    """pyproject's TID251 list (banned-api has no wildcard) names every ``chatproto._*``
    module, so a new private module is private from its first commit."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    banned = set(config["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-api"])
    private = {f"chatproto.{p.stem}" for p in (ROOT / "chatproto").glob("_*.py")
               if p.stem != "__init__"}
    assert private and private <= banned, sorted(private - banned)


def test_the_public_api_resolves_and_is_lazy() -> None:
    """Every name in ``chatproto.__all__`` resolves to the object its module defines, and
    ``import chatproto`` alone loads the errors only (PEP 562 for the rest, the data model
    and its dataclasses included)."""
    import importlib
    import subprocess
    import sys

    import chatproto

    for name in chatproto.__all__:
        assert getattr(chatproto, name) is not None, name
    lazy = chatproto._LAZY
    for name, module in lazy.items():
        assert getattr(chatproto, name) is getattr(
            importlib.import_module(module, "chatproto"), name)
    probe = ("import sys, chatproto; "
             "print(sorted(m for m in sys.modules if m.startswith('chatproto')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == str(["chatproto", "chatproto._errors"])
    with pytest.raises(AttributeError):
        _ = chatproto.no_such_name
