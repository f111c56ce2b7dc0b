"""The import graph of the project, read from the code: no circle anywhere (not even through an import inside a
function, the usual way to hide one), and the floors of docs/architecture.md in the direction they are drawn."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("simclr", "objectives", "comparison", "storage", "reports", "bench")
TOP = ("study", "cli_args", "errors", "atomic")


def module_files() -> dict[str, Path]:
    """Every project module by dotted name (a package by its own name: its __init__.py)."""
    out = {name: REPO / f"{name}.py" for name in TOP}
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def imported(path: Path, modules: set[str]) -> set[str]:
    """The project modules a file imports, at the top or inside a function: `from pkg import sub` names the
    submodule when there is one, else the package."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= (subs & modules) or {node.module}
    return {name for name in found if name in modules}


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imported(path, set(files)) - {name} for name, path in files.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def test_no_import_circle_anywhere():
    assert circles(graph()) == []


def test_the_circle_finder_finds_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def package_of(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize(
    "package, allowed",
    [
        ("errors", set()),
        ("atomic", set()),
        ("simclr", {"errors", "atomic"}),
        ("storage", {"errors", "atomic"}),
        ("objectives", {"errors", "atomic", "simclr", "storage"}),
        ("comparison", {"errors", "atomic", "simclr", "storage", "objectives"}),
        ("reports", {"errors", "atomic", "storage", "comparison.regimes"}),
    ],
)
def test_floors_point_down(package, allowed):
    """Each package imports only the floors below it; reports reads the regime table, nothing else of the
    comparison (the report starts without torch)."""
    for module, targets in graph().items():
        if package_of(module) != package:
            continue
        outside = {t for t in targets if package_of(t) != package}
        bad = {t for t in outside if t not in allowed and package_of(t) not in allowed}
        assert not bad, (module, bad)


def test_the_regime_table_is_the_ground_floor():
    """comparison.regimes imports nothing of the project: the plan, the report and the CLI all read it."""
    assert graph()["comparison.regimes"] == set()
