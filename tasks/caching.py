"""Cache policies: a task's result is reused across runs when its inputs, its own source and the source of the
code it runs are unchanged (Prefect's default policy also keys on the run id, which would defeat that).

"The code it runs" is the import closure of the task's module (`e2ep.codehash`): editing ALS retrains ALS only,
and a task's settings are keyed by value, not by the source of the config classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

from e2ep.codehash import code_digest


@dataclass
class ModuleCode(CachePolicy):
    """Keys on the import closure of the given modules (usually the task's own module)."""

    modules: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(self, task_ctx: Any, inputs: Any, flow_parameters: Any, **kwargs: Any) -> str:
        return code_digest(*self.modules)


@dataclass
class ModelCode(CachePolicy):
    """Keys on the code of the model a training task fits: the import closure of its recommender's module."""

    job_parameter: str = "job"

    def compute_key(self, task_ctx: Any, inputs: Any, flow_parameters: Any, **kwargs: Any) -> str:
        from models.registry import model_module

        return code_digest(model_module(inputs[self.job_parameter].model))


def code_and_inputs(*modules: str) -> CachePolicy:
    """Inputs + the task's source + the code the `modules` run."""
    return INPUTS + TASK_SOURCE + ModuleCode(modules=tuple(modules))


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry a failed task unless its error is one a person must fix (an E2EPError:
    a stopped LLM stage, too many fallbacks, the run's LLM cap reached, bad input); retrying those only delays the
    one-line message."""
    from e2ep.errors import E2EPError

    try:
        error = state.result(raise_on_failure=False)
    except Exception:
        return True
    return not isinstance(error, E2EPError)
