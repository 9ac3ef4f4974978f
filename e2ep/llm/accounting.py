"""Per-stage token, cost and reliability counters of the LLM gateway (thread-safe, JSON-able)."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from e2ep.store import write_text


@dataclass
class StageUsage:
    requests: int = 0
    """Logical requests (`complete` calls and `complete_many` items), cached or not."""
    cache_hits: int = 0
    """Requests answered from the disk cache (no HTTP call)."""
    calls: int = 0
    """HTTP attempts made: first tries, retries and repair requests."""
    retries: int = 0
    """Attempts repeated after a transient error (rate limit, 5xx, timeout, dropped connection)."""
    repairs: int = 0
    """Follow-up requests sent because an answer failed validation."""
    failures: int = 0
    """Requests that ended in an error (call failed after retries, or answer still invalid after repair)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    """litellm's `completion_cost` of the successful calls; 0 where the model's price is unknown."""
    saved_cost_usd: float = 0.0
    """Cost of the cached answers reused, as recorded when they were first bought."""
    latency_s: float = 0.0
    """Wall-clock seconds spent in successful HTTP calls, summed."""
    replayed_failures: int = 0
    """Requests whose memoised failure was reproduced without a call (counted in `failures` too)."""
    retried_failures: int = 0
    """Memoised failures asked again because `llm.retry_failed` is set."""

    def add(self, other: StageUsage) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class UsageLedger:
    """Counters keyed by stage label; `summary()` adds a `total` row."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, StageUsage] = {}

    def record(self, stage: str, **deltas: float) -> None:
        with self._lock:
            usage = self._stages.setdefault(stage, StageUsage())
            for name, delta in deltas.items():
                setattr(usage, name, getattr(usage, name) + delta)

    def stage(self, stage: str) -> StageUsage:
        with self._lock:
            return StageUsage(**asdict(self._stages.get(stage, StageUsage())))

    def summary(self, model: str | None = None) -> dict[str, Any]:
        with self._lock:
            stages = {name: asdict(u) for name, u in sorted(self._stages.items())}
            total = StageUsage()
            for usage in self._stages.values():
                total.add(usage)
        rows = [*stages.values(), totals := asdict(total)]
        for row in rows:
            for name in ("cost_usd", "saved_cost_usd", "latency_s"):
                row[name] = round(row[name], 10 if "cost" in name else 3)
        return {"model": model, "stages": stages, "total": totals}

    def write(self, path: str | Path, model: str | None = None) -> Path:
        return write_text(json.dumps(self.summary(model), indent=2) + "\n", path)
