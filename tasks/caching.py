"""Cache policies: a task's result is reused across runs when its inputs, its own source and the source of the
code it runs are unchanged (Prefect's default policy also keys on the run id, which would defeat that)."""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy


@lru_cache(maxsize=None)
def package_source_digest(name: str) -> str:
    """sha256 over every .py file of an importable package (in path order), or of a single module."""
    module = importlib.import_module(name)
    source = Path(module.__file__)
    root = source.parent if hasattr(module, "__path__") else source
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() if root == path else str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@dataclass
class PackageSource(CachePolicy):
    """Keys on the source of whole packages (or modules), so editing a model's code retrains it."""

    packages: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(self, task_ctx: Any, inputs: Any, flow_parameters: Any, **kwargs: Any) -> str:
        return hashlib.sha256("".join(package_source_digest(p) for p in self.packages).encode()).hexdigest()


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry a failed task unless its error is one a person must fix (an E2EPError:
    a stopped LLM stage, too many fallbacks, bad input); retrying those only delays the one-line message."""
    from e2ep.errors import E2EPError

    try:
        error = state.result(raise_on_failure=False)
    except Exception:
        return True
    return not isinstance(error, E2EPError)


def code_and_inputs(*packages: str) -> CachePolicy:
    """Inputs + the task's source + the source of `packages`."""
    return INPUTS + TASK_SOURCE + PackageSource(packages=tuple(packages))
