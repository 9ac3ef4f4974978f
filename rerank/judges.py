"""Judges: who decides which candidate fits a user better. Every strategy talks to this small interface.

    judge.order(ctx, items)      -> the items, best first           (prompt: whole pool; batch: windows)
    judge.prefer(ctx, a, b)      -> the preferred one of two        (bst)
    judge.scores(ctx, items)     -> 0-100 relevance of each item    (relevancy)
    judge.explain(ctx, ranked)   -> a short rationale per item      (explanations)

`LLMJudge` asks the LLM gateway (memoised, one repair request per invalid answer; a unit still invalid, or whose call
failed, falls back to the base model's order, or the template explanation, and is counted). `SemanticJudge` needs no
LLM: its affinity of user u and item i, from unit-norm profile embeddings p and Dislikes-section embeddings d, is

    s(u, i) = cos(p_u, p_i) − β/2 · (cos(d_u, p_i) + cos(p_u, d_i))        (β = `dislike_weight`)

so what the user dislikes, and the kind of viewer the item does not suit, count against the match (signal
`profile`). With signal `liked-items` (the default: better on validation, see the README) the affinity is instead
the mean cosine of the item's profile embedding with the m most similar of the user's liked training movies,

    s(u, i) = mean of the top m of { cos(p_i, p_j) : j liked by u }          (m = `liked_neighbours`)

an item-to-item content neighbourhood, falling back to the profile signal for a user with no liked movie. Either
way it orders by s (ties: base order), prefers the higher s, and scores 50 · (1 + s) clipped to [0, 100].
Deterministic, offline, and not an LLM: reports label it `semantic`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from e2ep.llm import LLMError, LLMGateway
from rerank.explain import template_explanation
from rerank.inputs import RerankInputs, UserContext
from rerank.parsing import label, parse_choice, parse_explanations, parse_order, parse_scores
from rerank.prompts import Messages, choice_prompt, explanation_request, order_prompt, score_prompt

T = TypeVar("T")


@dataclass
class Cost:
    """Per strategy and fold. `requests`: judge requests (what an LLM is asked; for the semantic judge what it
    would be asked); the rest as the LLM gateway counts them (`calls` are HTTP attempts, repairs included)."""

    users: int = 0
    requests: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    repairs: int = 0
    fallbacks: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class Judge(Protocol):
    kind: str
    parallel: bool

    def order(self, ctx: UserContext, items: Sequence[int]) -> list[int]: ...
    def prefer(self, ctx: UserContext, a: int, b: int) -> int: ...
    def scores(self, ctx: UserContext, items: Sequence[int]) -> list[float]: ...
    def explain(self, ctx: UserContext, ranked: Sequence[int]) -> dict[int, str]: ...
    def cost(self) -> Cost: ...


class SemanticJudge:
    kind = "semantic"
    parallel = False

    def __init__(
        self, inputs: RerankInputs, dislike_weight: float = 0.5, signal: str = "profile", neighbours: int = 10
    ) -> None:
        if signal not in ("profile", "liked-items"):
            raise ValueError(f"unknown semantic signal {signal!r}; use 'profile' or 'liked-items'")
        self.inputs = inputs
        self.dislike_weight = dislike_weight
        self.signal, self.neighbours = signal, neighbours
        self._requests = 0
        self._lock = threading.Lock()

    def affinity(self, user: int, items: Sequence[int]) -> np.ndarray:
        inp, idx = self.inputs, np.asarray(items, dtype=np.int64)
        liked = [i for i, _ in inp.liked.get(user, [])]
        if self.signal == "liked-items" and liked:
            sims = inp.item_vectors[idx] @ inp.item_vectors[np.asarray(liked, dtype=np.int64)].T
            m = min(self.neighbours, sims.shape[1])
            return np.sort(sims, axis=1)[:, -m:].mean(axis=1).astype(np.float64)
        p_u, p_i = inp.user_vectors[user], inp.item_vectors[idx]
        s = p_i @ p_u
        if self.dislike_weight and inp.user_dislike_vectors is not None and inp.item_dislike_vectors is not None:
            against = p_i @ inp.user_dislike_vectors[user] + inp.item_dislike_vectors[idx] @ p_u
            s = s - self.dislike_weight / 2 * against
        return s.astype(np.float64)

    def _count(self) -> None:
        with self._lock:
            self._requests += 1

    def order(self, ctx: UserContext, items: Sequence[int]) -> list[int]:
        self._count()
        s, rank = self.affinity(ctx.user_idx, items), ctx.base_rank
        return [item for _, item in sorted(zip(-s, items, strict=True), key=lambda p: (p[0], rank[p[1]]))]

    def prefer(self, ctx: UserContext, a: int, b: int) -> int:
        self._count()
        sa, sb = self.affinity(ctx.user_idx, [a, b])
        if sa != sb:
            return a if sa > sb else b
        return min(a, b, key=ctx.base_rank.__getitem__)

    def scores(self, ctx: UserContext, items: Sequence[int]) -> list[float]:
        self._count()
        return list(np.clip(50 * (1 + self.affinity(ctx.user_idx, items)), 0, 100))

    def explain(self, ctx: UserContext, ranked: Sequence[int]) -> dict[int, str]:
        return {item: template_explanation(ctx.user_idx, item, self.inputs) for item in ranked}

    def cost(self) -> Cost:
        return Cost(requests=self._requests)


class LLMJudge:
    kind = "llm"
    parallel = True

    def __init__(self, gateway: LLMGateway, inputs: RerankInputs, stage: str = "rerank", recent: int = 10) -> None:
        self.gateway, self.inputs, self.stage, self.recent = gateway, inputs, stage, recent
        self._fallbacks = 0
        self._lock = threading.Lock()
        # The pool-wide ranking conversation per user, continued for the explanations.
        self._conversations: dict[int, Messages] = {}

    def _ask(self, messages: Messages, validate: Callable[[str], T], fallback: Callable[[], T]) -> tuple[T, str | None]:
        """(validated answer, its text), or (fallback(), None) when the call failed or the answer is still invalid
        after the repair."""
        try:
            result = self.gateway.complete(messages, stage=self.stage, validate=validate)
        except LLMError:  # this unit only (memoised as such); a stopped stage (LLMStageStopped) is no LLMError
            with self._lock:
                self._fallbacks += 1
            return fallback(), None
        return result.value, result.text

    def order(self, ctx: UserContext, items: Sequence[int]) -> list[int]:
        items = list(items)
        messages = order_prompt(ctx, self.inputs, items, self.recent)
        rank = ctx.base_rank
        ranked, text = self._ask(messages, lambda t: parse_order(t, items), lambda: sorted(items, key=rank.__getitem__))
        if text is not None and len(items) == len(ctx.candidates):
            self._conversations[ctx.user_idx] = [*messages, {"role": "assistant", "content": text}]
        return ranked

    def prefer(self, ctx: UserContext, a: int, b: int) -> int:
        messages = choice_prompt(ctx, self.inputs, a, b, self.recent)
        return self._ask(messages, lambda t: parse_choice(t, a, b), lambda: min(a, b, key=ctx.base_rank.__getitem__))[0]

    def scores(self, ctx: UserContext, items: Sequence[int]) -> list[float]:
        items = list(items)
        messages = score_prompt(ctx, self.inputs, items, self.recent)
        # Fallback: the base order spread over 100..0, so the unit says what the base model says.
        n = len(items)
        rank = ctx.base_rank
        base = sorted(items, key=rank.__getitem__)
        fallback = {item: 100.0 * (n - 1 - base.index(item)) / max(n - 1, 1) for item in items}
        found = self._ask(messages, lambda t: parse_scores(t, items), lambda: fallback)[0]
        return [float(found[i]) for i in items]

    def explain(self, ctx: UserContext, ranked: Sequence[int]) -> dict[int, str]:
        """In the ranking's conversation: the pool-wide ranking exchange when there was one (prompt strategy), else
        the same context with the final order as the assistant's answer; then the request for rationales."""
        ranked = list(ranked)
        conversation = self._conversations.get(ctx.user_idx)
        if conversation is None:
            conversation = [
                *order_prompt(ctx, self.inputs, ctx.candidates, self.recent),
                {"role": "assistant", "content": " > ".join(label(i) for i in ranked)},
            ]
        messages = [*conversation, {"role": "user", "content": explanation_request(ranked)}]
        return self._ask(
            messages,
            lambda t: parse_explanations(t, ranked),
            lambda: {i: template_explanation(ctx.user_idx, i, self.inputs) for i in ranked},
        )[0]

    def cost(self) -> Cost:
        usage: Any = self.gateway.ledger.stage(self.stage)
        return Cost(
            requests=usage.requests,
            calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cache_hits=usage.cache_hits,
            repairs=usage.repairs,
            fallbacks=self._fallbacks,
            cost_usd=usage.cost_usd,
        )
