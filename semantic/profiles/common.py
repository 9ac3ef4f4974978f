"""What the item and user profile builders share: the slice of the LLM gateway they call, asking it for
schema-valid profiles, and the result frame they return."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import polars as pl

from semantic.profiles.config import ProfilesConfig
from semantic.profiles.schema import integrated, validate_profile

Messages = list[dict[str, str]]


@runtime_checkable
class ChatGateway(Protocol):
    """The slice of `e2ep.llm.LLMGateway` used here: `complete_many` answers prompts in order, each result having
    the validated answer as `.value`, or (with `return_exceptions`) the error in its place."""

    def complete_many(
        self,
        prompts: list[Messages],
        stage: str = "default",
        validate: Callable[[str], Any] | None = None,
        params: dict[str, Any] | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]: ...


def backend_for(cfg: ProfilesConfig, gateway: ChatGateway | None) -> str:
    """`auto` means LLM-written when a gateway is at hand, template otherwise. The experiment flow resolves it at
    its entry (flows.config.resolve_auto); this stays for stand-alone use of the profile builders."""
    if cfg.backend == "auto":
        return "llm" if gateway is not None else "template"
    return cfg.backend


def ask_many(gateway: ChatGateway, prompts: list[Messages], stage: str, cfg: ProfilesConfig) -> list[str | None]:
    """Schema-validated profiles for `prompts`, None where the gateway gave up (callers fall back to templates)."""
    results = gateway.complete_many(
        prompts,
        stage=stage,
        validate=validate_profile,
        params={"temperature": cfg.temperature, "max_tokens": cfg.max_tokens},
        return_exceptions=True,
    )
    return [None if isinstance(r, BaseException) else r.value for r in results]


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
