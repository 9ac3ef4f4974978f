"""What the profile builders need from the LLM gateway, and the result type they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import polars as pl

from e2ep.profiles.config import ProfilesConfig
from e2ep.profiles.schema import integrated

Messages = list[dict[str, str]]


@runtime_checkable
class ChatGateway(Protocol):
    """The slice of `e2ep.llm`'s gateway used here. `validate` turns an answer into the result or raises ValueError
    (the gateway retries); `params` (temperature, max_tokens) are forwarded to the model. `complete_many` returns
    results in request order; an entry that could not be produced may be an exception instance or None, which
    the callers treat as a failure and replace with a template profile."""

    def complete(
        self, messages: Messages, *, stage: str, validate: Callable[[str], Any] | None = None, **params: Any
    ) -> Any: ...

    def complete_many(
        self,
        requests: list[Messages],
        *,
        stage: str,
        validate: Callable[[str], Any] | None = None,
        **params: Any,
    ) -> list[Any]: ...


def is_failure(answer: Any) -> bool:
    return answer is None or isinstance(answer, BaseException) or not isinstance(answer, str)


@dataclass(frozen=True)
class ProfileResult:
    """frame: `<key>_idx`, profile (Markdown), text (what gets embedded), profile_source; counts: rows per source
    (`llm`, `template`, `precomputed`, `template_fallback`, `minimal`) plus any stage-specific counters."""

    frame: pl.DataFrame
    counts: dict[str, int]


def finish_frame(frame: pl.DataFrame, cfg: ProfilesConfig, extra: dict[str, int] | None = None) -> ProfileResult:
    """Add the embedded `text` column for the configured representation and count rows by source."""
    key = frame.columns[0]
    if cfg.representation == "integrated":
        text = pl.Series("text", [integrated(p) for p in frame["profile"]], dtype=pl.String)
    else:
        text = frame["profile"].alias("text")
    out = frame.with_columns(text).select(key, "profile", "text", "profile_source").sort(key)
    counts = {str(k): int(v) for k, v in out["profile_source"].value_counts().iter_rows()}
    return ProfileResult(out, {**dict(sorted(counts.items())), **(extra or {})})
