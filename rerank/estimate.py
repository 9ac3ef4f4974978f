"""Cost estimates of the LLM reranking strategies, before the base model has produced a single candidate.

A strategy's prompts need the base model's top candidates, which exist only after training, so the estimate is a
formula: requests per user from the strategy's call count (exact for prompt and relevancy; for BST and batch the
expectation for a judge whose order is random, with the worst case as the bound), times the users reranked, times
the tokens of representative prompts built from the profiles with a stand-in pool (the user's most popular unseen
training items). Repair requests are not included. Explanations add one request per user.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np
import polars as pl

from e2ep.llm.estimate import Estimator, StageEstimate
from rerank.config import RerankConfig
from rerank.inputs import RerankInputs, UserContext, liked_items
from rerank.parsing import label
from rerank.prompts import Messages, choice_prompt, explanation_request, order_prompt, score_prompt
from rerank.strategies import max_bst_comparisons, relevancy_batches, sliding_window_sort

REPRESENTATIVE_USERS = 8
"""Users per fold whose prompts are built and token-counted to represent everyone's."""

RATIONALE = (
    "It shares the viewer's taste for character-driven drama with sharp dialogue, a strong ensemble cast "
    "and the dark humour of films they rated highly."
)
"""A rationale of the length the explanation request asks for (at most 30 words), to count completion tokens."""


@dataclass(frozen=True)
class Calls:
    """Requests per user: `expected` for a random-order judge, `bound` at most; `explain` of them explanations."""

    expected: float
    bound: int
    explain: int


def _insertion_comparisons(m: int) -> float:
    """Mean comparisons to insert into a sorted list of m by bisection, over the m + 1 equally likely places."""
    total = 0
    for place in range(m + 1):
        lo, hi = 0, m
        while lo < hi:
            mid = (lo + hi) // 2
            total += 1
            if place <= mid:
                hi = mid
            else:
                lo = mid + 1
    return total / (m + 1)


@lru_cache(maxsize=64)
def _batch_windows(n: int, window: int, stride: int) -> tuple[float, int]:
    """(mean windows judged over random orders, windows when every pass changes something)."""
    rng = random.Random(0)
    trials = []
    for _ in range(50):
        truth = {i: rng.random() for i in range(n)}
        trials.append(sliding_window_sort(list(range(n)), partial(sorted, key=truth.__getitem__), window, stride)[1])
    worst = sliding_window_sort(list(range(n)), lambda seg: seg[::-1], window, stride)[1]
    return sum(trials) / len(trials), max(worst, max(trials))


def strategy_calls(strategy: str, cfg: RerankConfig, n: int) -> Calls:
    """Requests one user's pool of n candidates costs with `strategy` (explanations included when configured)."""
    explain = 1 if cfg.explanations else 0
    if n < 2:
        return Calls(explain, explain, explain)
    if strategy == "prompt":
        expected, bound = 1.0, 1
    elif strategy == "bst":
        ways = 2 if cfg.bst_both_orders else 1
        expected = ways * sum(_insertion_comparisons(m) for m in range(n))
        bound = ways * max_bst_comparisons(n)
    elif strategy == "batch":
        expected, bound = _batch_windows(n, cfg.batch_window, cfg.batch_stride)
    elif strategy == "relevancy":
        expected = bound = len(
            relevancy_batches(list(range(n)), cfg.relevancy_batch, cfg.relevancy_appearances, cfg.seed)
        )
    else:
        raise ValueError(f"unknown rerank strategy {strategy!r}")
    return Calls(expected + explain, bound + explain, explain)


def stand_in_pools(train: pl.DataFrame, users: Sequence[int], pool_size: int) -> dict[int, list[int]]:
    """Each user's most popular items not in their training ratings: a stand-in for the base model's pool."""
    popular = train.group_by("item_idx").len().sort(["len", "item_idx"], descending=[True, False])["item_idx"]
    ranked = popular.to_list()
    seen: dict[int, set[int]] = {}
    wanted = set(users)
    for user, item in train.select("user_idx", "item_idx").iter_rows():
        if user in wanted:
            seen.setdefault(user, set()).add(item)
    out = {}
    for user in users:
        mine = seen.get(user, set())
        out[user] = [i for i in ranked if i not in mine][:pool_size]
    return out


def representative_prompts(
    strategy: str, cfg: RerankConfig, inputs: RerankInputs, pools: dict[int, list[int]]
) -> tuple[list[Messages], list[str], list[Messages], list[str]]:
    """(judge prompts, answers of the requested shape, explanation prompts, their answers) for these pools."""
    rng = random.Random(cfg.seed)
    asks, answers, explains, rationales = [], [], [], []
    for user, pool in pools.items():
        if len(pool) < 2:
            continue
        ctx = UserContext(user, pool, [float(len(pool) - i) for i in range(len(pool))])
        recent = cfg.recent_interactions
        if strategy == "prompt":
            asks.append(order_prompt(ctx, inputs, pool, recent))
            answers.append(" > ".join(label(i) for i in pool))
        elif strategy == "bst":
            a, b = rng.sample(pool, 2)
            asks.append(choice_prompt(ctx, inputs, a, b, recent))
            answers.append(label(a))
        elif strategy == "batch":
            start = rng.randrange(max(1, len(pool) - cfg.batch_window + 1))
            window = pool[start : start + cfg.batch_window]
            asks.append(order_prompt(ctx, inputs, window, recent))
            answers.append(" > ".join(label(i) for i in window))
        else:
            batch = rng.sample(pool, min(cfg.relevancy_batch, len(pool)))
            asks.append(score_prompt(ctx, inputs, batch, recent))
            answers.append("\n".join(f"{label(i)}: {rng.randrange(101)}" for i in batch))
        ranked = " > ".join(label(i) for i in pool)
        explains.append(
            [
                *order_prompt(ctx, inputs, pool, recent),
                {"role": "assistant", "content": ranked},
                {"role": "user", "content": explanation_request(pool)},
            ]
        )
        rationales.append("{" + ", ".join(f'"{label(i)}": "{RATIONALE}"' for i in pool) + "}")
    return asks, answers, explains, rationales


def rerank_estimate(
    est: Estimator,
    strategy: str,
    cfg: RerankConfig,
    train: pl.DataFrame,
    user_profiles: dict[int, str],
    item_profiles: dict[int, str],
    users: Sequence[int],
    min_rating: float,
    stage: str,
) -> StageEstimate:
    """One strategy on one fold: `users` reranked, pools of `cfg.pool_size` (see the module docstring)."""
    n = cfg.pool_size
    calls = strategy_calls(strategy, cfg, n)
    picked = sorted(random.Random(cfg.seed).sample(list(users), min(REPRESENTATIVE_USERS, len(users))))
    inputs = RerankInputs(
        user_profiles=user_profiles,
        item_profiles=item_profiles,
        user_vectors=np.zeros((1, 1), np.float32),
        item_vectors=np.zeros((1, 1), np.float32),
        liked=liked_items(train.filter(pl.col("user_idx").is_in(picked)), min_rating),
    )
    asks, answers, explains, rationales = representative_prompts(
        strategy, cfg, inputs, stand_in_pools(train, picked, n)
    )
    per_ask = est.mean_tokens(asks)
    per_answer = sum(est.text_tokens(a) for a in answers) / max(len(answers), 1)
    per_explain = est.mean_tokens(explains) if calls.explain else 0.0
    per_rationale = sum(est.text_tokens(r) for r in rationales) / max(len(rationales), 1) if calls.explain else 0.0
    judged = (calls.expected - calls.explain) * len(users)
    explained = calls.explain * len(users)
    prompt = round(judged * per_ask + explained * per_explain)
    completion = round(judged * per_answer + explained * per_rationale)
    bound = calls.bound * len(users)
    expected = int(math.ceil(calls.expected * len(users) - 1e-9))
    how = "exact" if calls.bound == calls.expected else f"expected, at most {calls.bound}"
    note = f"{len(users):,} users × {calls.expected:.1f} requests ({how})"
    return StageEstimate(
        stage,
        expected,
        prompt,
        completion,
        est.price(prompt, completion),
        0,
        0.0,
        bound if bound != expected else None,
        "formula",
        note,
    )
