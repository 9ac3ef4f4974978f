"""The four reranking strategies (paper section 2.3). Each takes one user's pool and a judge, and returns the
judge's verdict as scores aligned with the candidates (base order); fusion with the base model happens after.

- prompt: one listwise request orders the whole pool.
- bst: binary insertion of the candidates (in base order) into a sorted list, which is a perfectly balanced binary
  search tree searched by bisection: inserting the i-th item takes at most ⌈log2 i⌉ comparisons, so a pool of n
  costs at most Σ_{i=1..n} ⌈log2 i⌉ (69 for n = 20). Comparisons are memoised per user; `both_orders` asks each
  pair as (a, b) and (b, a) and lets the base order decide when the answers disagree (position bias).
- batch: overlapping windows of w (default 5), stride s (default 2). Merge: windows are applied in place on one
  global list, from the bottom of the unsettled region to its top, each window's judged order overwriting its
  positions. Consecutive windows share w − s positions, so the w − s best items of the region are carried to its
  top in one pass; those positions are then settled and the next pass covers the rest. Passes stop when one
  changes nothing or the region fits one window. The result is always a permutation, and for a judge consistent
  with a total order it is exactly that order (a sliding-window sort, as in RankGPT, run to the end).
- relevancy: `appearances` rounds; each round splits the pool into batches of b (default 5), round 0 in base
  order, later rounds in seeded shuffles (different batch mates and positions); each batch's 0-100 scores are
  averaged per candidate, so every candidate gets exactly `appearances` scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rerank.config import RerankConfig
from rerank.fusion import order_scores
from rerank.inputs import UserContext
from rerank.judges import Judge


@dataclass(frozen=True)
class Verdict:
    """Judge scores aligned with `ctx.candidates` (higher = better) and the requests this user cost."""

    scores: np.ndarray
    requests: int


def max_bst_comparisons(n: int) -> int:
    """Σ_{i=1..n} ⌈log2 i⌉: the most comparisons binary insertion of n items needs."""
    return sum(math.ceil(math.log2(i)) for i in range(1, n + 1))


def binary_insertion(items: Sequence[int], better: Callable[[int, int], int]) -> tuple[list[int], int]:
    """(items sorted best first, distinct comparisons made). `better(a, b)` returns the preferred of the two and is
    asked each unordered pair at most once."""
    memo: dict[tuple[int, int], int] = {}

    def winner(a: int, b: int) -> int:
        key = (a, b) if a < b else (b, a)
        if key not in memo:
            memo[key] = better(a, b)
        return memo[key]

    ranked: list[int] = []
    for item in items:
        lo, hi = 0, len(ranked)
        while lo < hi:
            mid = (lo + hi) // 2
            if winner(item, ranked[mid]) == item:
                hi = mid
            else:
                lo = mid + 1
        ranked.insert(lo, item)
    return ranked, len(memo)


def sliding_window_sort(
    items: Sequence[int], order: Callable[[list[int]], list[int]], window: int, stride: int
) -> tuple[list[int], int]:
    """(items in merged order, windows judged): see `batch` in the module docstring."""
    ranked, n, top, asked = list(items), len(items), 0, 0
    settle = window - stride
    while n - top > 1:
        changed, start = False, max(top, n - window)
        while True:
            segment = ranked[start : start + window]
            judged = order(segment)
            asked += 1
            if sorted(judged) != sorted(segment):
                raise ValueError("a window's order must be a permutation of the window")
            if judged != segment:
                ranked[start : start + window] = judged
                changed = True
            if start == top:
                break
            start = max(top, start - stride)
        if not changed or n - top <= window:
            break
        top += settle
    return ranked, asked


def relevancy_batches(items: Sequence[int], batch: int, appearances: int, seed: int) -> list[list[int]]:
    """`appearances` rounds of batches of `batch`, each round covering every item once (see the docstring)."""
    rng = np.random.default_rng(seed)
    batches: list[list[int]] = []
    seen: set[frozenset[int]] = set()
    for round_ in range(appearances):
        order = list(items)
        if round_:
            for _ in range(10):  # prefer batch sets not used in an earlier round, when there are any
                order = [items[i] for i in rng.permutation(len(items))]
                if not any(frozenset(order[j : j + batch]) in seen for j in range(0, len(order), batch)):
                    break
        chunks = [order[j : j + batch] for j in range(0, len(order), batch)]
        seen.update(frozenset(c) for c in chunks)
        batches.extend(chunks)
    return batches


def prompt_strategy(judge: Judge, ctx: UserContext, cfg: RerankConfig) -> Verdict:
    return Verdict(order_scores(judge.order(ctx, ctx.candidates), ctx.candidates), 1)


def bst_strategy(judge: Judge, ctx: UserContext, cfg: RerankConfig) -> Verdict:
    rank = ctx.base_rank

    def better(a: int, b: int) -> int:
        first = judge.prefer(ctx, a, b)
        if not cfg.bst_both_orders:
            return first
        second = judge.prefer(ctx, b, a)
        return first if first == second else min(a, b, key=rank.__getitem__)

    ranked, comparisons = binary_insertion(ctx.candidates, better)
    return Verdict(order_scores(ranked, ctx.candidates), comparisons * (2 if cfg.bst_both_orders else 1))


def batch_strategy(judge: Judge, ctx: UserContext, cfg: RerankConfig) -> Verdict:
    ranked, asked = sliding_window_sort(
        ctx.candidates, lambda seg: judge.order(ctx, seg), cfg.batch_window, cfg.batch_stride
    )
    return Verdict(order_scores(ranked, ctx.candidates), asked)


def relevancy_strategy(judge: Judge, ctx: UserContext, cfg: RerankConfig) -> Verdict:
    totals = dict.fromkeys(ctx.candidates, 0.0)
    counts = dict.fromkeys(ctx.candidates, 0)
    batches = relevancy_batches(
        ctx.candidates, cfg.relevancy_batch, cfg.relevancy_appearances, seed=cfg.seed * 1_000_003 + ctx.user_idx
    )
    for batch in batches:
        for item, score in zip(batch, judge.scores(ctx, batch), strict=True):
            totals[item] += score
            counts[item] += 1
    return Verdict(np.array([totals[c] / counts[c] for c in ctx.candidates]), len(batches))


STRATEGIES: dict[str, Callable[[Judge, UserContext, RerankConfig], Verdict]] = {
    "prompt": prompt_strategy,
    "bst": bst_strategy,
    "batch": batch_strategy,
    "relevancy": relevancy_strategy,
}
