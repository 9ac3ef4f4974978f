"""The code a module runs: its import closure within this project, read statically from the source (no module
is executed to find it), and a digest of it for cache keys. Not followed:

* configuration modules (`*.config`, `e2ep.configbase`, `e2ep.errors`) are not followed: a task receives its
  settings as values, and those values are already part of its inputs, so a new field or a reworded docstring in
  some other model's config does not invalidate it;
* `tasks.caching` and this module (how keys are made, not what a task does) are not followed;
* `models.registry` is not followed: it imports every model, while a training task runs one, so the training
  policy (`tasks.caching.ModelCode`) adds the chosen model's own closure instead. Editing ALS retrains ALS only.
"""

from __future__ import annotations

import ast
import hashlib
import threading
from functools import cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = frozenset({"e2ep", "data", "semantic", "models", "rerank", "evaluation", "tasks", "flows", "app"})
NOT_FOLLOWED = frozenset({"models.registry", "e2ep.configbase", "e2ep.errors", "tasks.caching", "e2ep.codehash"})


def _value_keyed(module: str) -> bool:
    return module in NOT_FOLLOWED or module.rsplit(".", 1)[-1] == "config"


def module_file(module: str) -> Path | None:
    """The project file defining `module` (a module's .py or a package's __init__.py), or None."""
    base = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Project modules imported anywhere in `tree` (also inside functions), except under `if TYPE_CHECKING:`."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from package import submodule` imports the submodule too.
            found.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name.split(".")[0] in PROJECT_PACKAGES and module_file(name) is not None}


def import_closure(*roots: str) -> tuple[Path, ...]:
    """Every project file the `roots` modules run when imported: themselves, their parent packages' `__init__`
    files and, transitively, the project modules they import (see the module docstring for what is not followed)."""
    # Tasks compute keys from several threads; CPython 3.11's ast.parse is not safe to run concurrently.
    with _parse_lock:
        return _import_closure(*roots)


_parse_lock = threading.Lock()


@cache
def _import_closure(*roots: str) -> tuple[Path, ...]:
    seen: dict[str, Path | None] = {}
    pending = list(roots)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        path = module_file(module)
        if path is None:
            raise ModuleNotFoundError(f"no project module {module!r} under {PROJECT_ROOT}")
        if module not in roots and _value_keyed(module):
            seen[module] = None
            continue
        seen[module] = path
        parts = module.split(".")
        pending += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        pending += sorted(_imports(tree, module, path.name == "__init__.py"))
    return tuple(sorted(p for p in seen.values() if p is not None))


@cache
def code_digest(*roots: str) -> str:
    """sha256 over the import closure of `roots` (project-relative paths and contents)."""
    h = hashlib.sha256()
    for path in import_closure(*roots):
        h.update(str(path.relative_to(PROJECT_ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()
