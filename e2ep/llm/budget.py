"""The run-wide cap on LLM calls and spend (`llm.max_calls`, `llm.max_cost_usd`).

A run's gateways live in many tasks, threads and (with Dask) processes, so the cap is one small JSON file under an
OS file lock, named by `$E2EP_LLM_SPEND_CAP` while the run lasts (`spend_cap(...)`). The gateway asks
`before_call()` just before it sends a request (which refuses once either limit is reached) and reports each
answer's cost with `record()`. Calls in flight when the limit is reached still finish and stay in the memo, so the
spend can pass `max_cost_usd` by at most those calls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2ep.errors import E2EPError
from e2ep.store import write_text

CAP_ENV = "E2EP_LLM_SPEND_CAP"


class BudgetExceeded(E2EPError):
    """The run reached `llm.max_calls` or `llm.max_cost_usd` (or its estimate is over them)."""


@dataclass(frozen=True)
class SpendCap:
    path: Path

    def _update(self, change: Any) -> dict[str, Any]:
        from filelock import FileLock

        with FileLock(str(self.path) + ".lock"):
            state = json.loads(self.path.read_text())
            change(state)
            write_text(json.dumps(state), self.path)
        return state

    def state(self) -> dict[str, Any]:
        return self._update(lambda s: None)

    def before_call(self) -> None:
        """Count one call about to be sent, or raise BudgetExceeded when a limit is already reached."""

        def take(state: dict[str, Any]) -> None:
            if state["max_calls"] is not None and state["calls"] >= state["max_calls"]:
                raise BudgetExceeded(
                    f"LLM call cap reached: {state['calls']} calls made, llm.max_calls = "
                    f"{state['max_calls']}; answered calls are kept in the memo, a rerun reuses them"
                )
            if state["max_cost_usd"] is not None and state["cost_usd"] >= state["max_cost_usd"]:
                raise BudgetExceeded(
                    f"LLM spend cap reached: ${state['cost_usd']:.4f} spent, llm.max_cost_usd = "
                    f"${state['max_cost_usd']:g}; answered calls are kept in the memo, a rerun "
                    "reuses them"
                )
            state["calls"] += 1

        self._update(take)

    def record(self, cost_usd: float) -> None:
        if cost_usd:
            self._update(lambda s: s.__setitem__("cost_usd", s["cost_usd"] + cost_usd))


def active_cap() -> SpendCap | None:
    """The cap of the run in progress, if it set one."""
    path = os.environ.get(CAP_ENV)
    return SpendCap(Path(path)) if path else None


@contextmanager
def spend_cap(folder: Path, max_calls: int | None, max_cost_usd: float | None) -> Iterator[SpendCap | None]:
    """Install a fresh cap for the calls made inside the block (nothing when neither limit is set)."""
    if max_calls is None and max_cost_usd is None:
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"spend-cap-{os.getpid()}-{id(folder):x}.json"
    write_text(json.dumps({"calls": 0, "cost_usd": 0.0, "max_calls": max_calls, "max_cost_usd": max_cost_usd}), path)
    previous = os.environ.get(CAP_ENV)
    os.environ[CAP_ENV] = str(path)
    try:
        yield SpendCap(path)
    finally:
        if previous is None:
            os.environ.pop(CAP_ENV, None)
        else:
            os.environ[CAP_ENV] = previous
        for leftover in (path, Path(str(path) + ".lock")):
            leftover.unlink(missing_ok=True)
