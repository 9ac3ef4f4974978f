"""What a run's LLM stages will cost, before any call: calls, tokens and USD per stage.

Stages hand in the prompts they would send (built, not sent) or, where prompts cannot exist yet, a call count and a
representative prompt; `Estimator` counts tokens with litellm's `token_counter` for the model (litellm falls back to
a generic tokenizer for a model it does not know: the table says so), prices them with litellm's local price map
(`LITELLM_LOCAL_MODEL_COST_MAP`), and looks every exact prompt up in the gateway's memo: answers already bought are
free and shown apart.

    est = Estimator(llm_config)
    hit = est.cached(messages, params, validate)            # the memo's answer, if this exact request was bought
    row = est.paid("item_profiles", prompts_to_pay, completion_tokens=350, cached_calls=..., cached_cost_usd=...)
    RunEstimate(est.model, [row, ...], [est.tokenizer_note]).markdown()

The stage builders live beside their stages (semantic/profiles/estimate.py, rerank/estimate.py); tasks/estimate.py
assembles a run's rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from e2ep.llm.config import LLMConfig, import_litellm
from e2ep.llm.gateway import Messages, cache_key, repair_messages

MAX_COUNTED = 1000
"""Prompts token-counted per stage; beyond this a seeded sample is counted and scaled (the table says so).
litellm's counter takes ~2 ms a prompt for OpenAI models, and a user-profile stage of ML-100K has ~3,300."""


@dataclass
class StageEstimate:
    stage: str
    calls: int
    """Calls to pay for (memo hits excluded); for a formula row, the expected number."""
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    """None when litellm has no price for the model."""
    cached_calls: int = 0
    """Requests the memo already answers (free)."""
    cached_cost_usd: float = 0.0
    """What those memo answers cost when they were bought."""
    upper_bound: int | None = None
    """Most calls the stage can make, when `calls` is an expectation (BST, batch)."""
    basis: str = "prompts"
    """`prompts`: built from the prompts the run will send; `formula`: call-count formula and representative
    prompts (the inputs do not exist before training)."""
    note: str = ""


@dataclass
class RunEstimate:
    model: str
    stages: list[StageEstimate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stages)

    @property
    def max_calls(self) -> int:
        return sum(s.upper_bound if s.upper_bound is not None else s.calls for s in self.stages)

    @property
    def cost_usd(self) -> float | None:
        costs = [s.cost_usd for s in self.stages]
        return None if any(c is None for c in costs) else float(sum(costs))  # type: ignore[arg-type]

    def max_cost_usd(self) -> float | None:
        """Cost with every bounded stage at its bound."""
        total = 0.0
        for s in self.stages:
            if s.cost_usd is None:
                return None
            scale = (s.upper_bound / s.calls) if s.upper_bound and s.calls else 1.0
            total += s.cost_usd * scale
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "stages": [asdict(s) for s in self.stages],
            "notes": self.notes,
            "total": {
                "calls": self.calls,
                "max_calls": self.max_calls,
                "cost_usd": self.cost_usd,
                "max_cost_usd": self.max_cost_usd(),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunEstimate:
        return cls(data["model"], [StageEstimate(**s) for s in data["stages"]], list(data.get("notes", [])))

    def markdown(self) -> str:
        lines = [
            f"LLM cost estimate for `{self.model}`",
            "",
            "| stage | calls | (at most) | prompt tokens | completion tokens | cost (USD) | in memo (free) | basis |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for s in self.stages:
            bound = f"{s.upper_bound:,}" if s.upper_bound is not None else ""
            memo = f"{s.cached_calls:,} (${s.cached_cost_usd:.2f})" if s.cached_calls else "0"
            lines.append(
                f"| {s.stage} | {s.calls:,} | {bound} | {s.prompt_tokens:,} | {s.completion_tokens:,} | "
                f"{_usd(s.cost_usd)} | {memo} | {s.basis}{': ' + s.note if s.note else ''} |"
            )
        cached = sum(s.cached_calls for s in self.stages)
        lines.append(
            f"| **total** | **{self.calls:,}** | {self.max_calls:,} | "
            f"{sum(s.prompt_tokens for s in self.stages):,} | "
            f"{sum(s.completion_tokens for s in self.stages):,} | **{_usd(self.cost_usd)}** "
            f"(at most {_usd(self.max_cost_usd())}) | {cached:,} | |"
        )
        return "\n".join(lines + [""] + [f"- {n}" for n in self.notes])


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


class MemoReader:
    """Read-only view of the gateway's disk memo (nothing is created when the folder does not exist)."""

    def __init__(self, config: LLMConfig) -> None:
        self._cache: Any = None
        folder = config.resolved_cache_dir()
        if config.cache and folder.is_dir():
            import diskcache

            self._cache = diskcache.Cache(str(folder), eviction_policy="none", size_limit=2**40)

    def get(self, key: str) -> dict[str, Any] | None:
        if self._cache is None:
            return None
        entry = self._cache.get(key)
        return entry if isinstance(entry, dict) and "text" in entry else None

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()


class Estimator:
    """Counts and prices prompts for one model; shared by every stage of a run's estimate."""

    def __init__(self, config: LLMConfig, seed: int = 0) -> None:
        model = config.resolved_model()
        if not model:
            raise ValueError("no LLM model configured")
        self.config, self.model, self.seed = config, model, seed
        self.memo = MemoReader(config)
        ll = import_litellm()
        try:
            ll.get_model_info(model)
            self.known = True
        except Exception:  # litellm does not know the model: generic tokenizer, maybe no price
            self.known = False
        self.tokenizer_note = (
            f"tokens counted with litellm's tokenizer for {model}"
            if self.known
            else f"litellm does not know {model}: tokens counted with its default tokenizer (an approximation)"
        )

    # -- primitives ----------------------------------------------------------------------------------------
    def tokens(self, messages: Messages) -> int:
        return int(import_litellm().token_counter(model=self.model, messages=messages))

    def text_tokens(self, text: str) -> int:
        return int(import_litellm().token_counter(model=self.model, text=text))

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if prompt_tokens == 0 and completion_tokens == 0:
            return 0.0
        try:
            p, c = import_litellm().cost_per_token(
                model=self.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        except Exception:  # no price listed for this model
            return None
        return float(p + c)

    def key(self, messages: Messages, params: dict[str, Any] | None) -> str:
        return cache_key(self.model, messages, {**self.config.generation_params(), **(params or {})})

    def cached(
        self, messages: Messages, params: dict[str, Any] | None, validate: Callable[[str], Any] | None = None
    ) -> dict[str, Any] | None:
        """The memo's answer to exactly this request (and still valid), as the gateway would reuse it: an invalid
        answer counts when the answer to its repair request is memoised too (a rerun replays both, free)."""
        hit = self.memo.get(self.key(messages, params))
        if hit is not None and validate is not None:
            try:
                validate(hit["text"])
            except ValueError as error:
                repair = self.memo.get(self.key(repair_messages(messages, hit["text"], error), params))
                if repair is None:
                    return None
                cost = float(hit.get("cost_usd") or 0.0) + float(repair.get("cost_usd") or 0.0)
                return {**repair, "cost_usd": cost}
        return hit

    def mean_tokens(self, prompts: Sequence[Messages]) -> float:
        """Mean prompt tokens, over a seeded sample of at most MAX_COUNTED prompts."""
        if not prompts:
            return 0.0
        chosen = (
            list(prompts)
            if len(prompts) <= MAX_COUNTED
            else random.Random(self.seed).sample(list(prompts), MAX_COUNTED)
        )
        return sum(self.tokens(p) for p in chosen) / len(chosen)

    # -- rows ----------------------------------------------------------------------------------------------
    def paid(
        self,
        stage: str,
        prompts: Sequence[Messages],
        completion_tokens: float,
        *,
        cached_calls: int = 0,
        cached_cost_usd: float = 0.0,
        note: str = "",
    ) -> StageEstimate:
        """A row for `prompts` still to be paid for (exact requests), each answered in ~`completion_tokens`."""
        n = len(prompts)
        prompt = round(self.mean_tokens(prompts) * n)
        completion = round(completion_tokens * n)
        sampled = f"tokens of {MAX_COUNTED} sampled prompts scaled to {n:,}" if n > MAX_COUNTED else ""
        return StageEstimate(
            stage,
            n,
            prompt,
            completion,
            self.price(prompt, completion),
            cached_calls,
            round(cached_cost_usd, 6),
            None,
            "prompts",
            "; ".join(x for x in (note, sampled) if x),
        )

    def close(self) -> None:
        self.memo.close()
