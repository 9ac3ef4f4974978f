"""The floors of the code (README, "Architecture"): every import points down or sideways, never up, and no two
modules import each other, directly or around a circle. Read statically from the source, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS: dict[str, int] = {
    "e2ep": 0,  # foundation: errors, storage, runtime, worker pool, the LLM gateway
    "data": 1,  # stages, in DAG order: ratings and folds,
    "semantic": 2,  # metadata, profiles and their embeddings,
    "models": 3,  # recommenders,
    "rerank": 4,  # LLM rerankers of a model's lists,
    "evaluation": 5,  # metrics, statistics and the run summary
    "tasks": 6,  # orchestration: Prefect tasks and flows
    "flows": 6,
    "app": 7,  # entry points: command line, benchmarks, serving
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Project modules `path` imports anywhere, `if TYPE_CHECKING:` blocks included (a type is a dependency)."""
    module, found = _module(path), set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in FLOORS}


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for top in FLOORS for p in (ROOT / top).rglob("*.py")}
    graph = {}
    for module, path in files.items():
        # `from pkg import name` names a module when `pkg.name` is one; else the package itself
        graph[module] = {name for name in _imports(path) if name in files and name != module}
    return graph


def _floor(module: str) -> int:
    return FLOORS[module.split(".")[0]]


def test_every_import_points_down_or_sideways():
    upward = sorted(
        f"{m} (floor {_floor(m)}) imports {t} (floor {_floor(t)})"
        for m, targets in _graph().items()
        for t in targets
        if _floor(t) > _floor(m)
    )
    assert upward == []


def test_no_import_circles():
    graph = _graph()
    # a module's package __init__ runs before it: importing `a.b` imports `a`, which is no edge of its own
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
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
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert circles == []


def test_the_floors_cover_every_package():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == set(FLOORS)
