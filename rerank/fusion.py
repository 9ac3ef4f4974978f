"""Fusing the judge's verdict with the base model's score (paper section 2.3: 80 % judge, 20 % model).

Both scores are first put on [0, 1] within one user's candidate pool, so that the weights mean the same for every
user, every base model (whose raw scores have arbitrary scales) and every judge:

    minmax:  x̂ = (x − min x) / (max x − min x)          (all equal: x̂ = 1)
    rank:    x̂ = (n − r) / (n − 1),  r = 1 for the best  (n = 1: x̂ = 1)

    fused = (w_j · ĵ + w_b · b̂) / (w_j + w_b)            (defaults w_j = 0.8, w_b = 0.2)

A judge that only orders (prompt, bst, batch) gives the score −position, for which both normalisations coincide.
Ties in the fused score keep the base model's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalise(values: Sequence[float] | np.ndarray, how: str = "minmax") -> np.ndarray:
    """Scores on [0, 1] within one pool; higher stays better (see the module docstring)."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return x
    if how == "minmax":
        span = x.max() - x.min()
        return np.ones(n) if span <= 0 else (x - x.min()) / span
    if how == "rank":
        if n == 1:
            return np.ones(1)
        order = np.argsort(-x, kind="stable")  # ties: earlier (better base) position ranks first
        ranks = np.empty(n)
        ranks[order] = np.arange(1, n + 1)
        return (n - ranks) / (n - 1)
    raise ValueError(f"unknown normalisation {how!r}; use 'minmax' or 'rank'")


def order_scores(order: Sequence[int], candidates: Sequence[int]) -> np.ndarray:
    """Judge score of each candidate (in `candidates` order) from an ordering: −(position in `order`)."""
    position = {item: i for i, item in enumerate(order)}
    return np.array([-position[c] for c in candidates], dtype=np.float64)


def fuse(
    base_scores: Sequence[float] | np.ndarray,
    judge_scores: Sequence[float] | np.ndarray,
    judge_weight: float = 0.8,
    base_weight: float = 0.2,
    how: str = "minmax",
) -> np.ndarray:
    """The fused score of each candidate; both inputs are aligned with the candidates in base order."""
    total = judge_weight + base_weight
    if total <= 0:
        raise ValueError("fusion weights must sum to a positive number")
    j, b = normalise(judge_scores, how), normalise(base_scores, how)
    return (judge_weight * j + base_weight * b) / total


def fused_order(candidates: Sequence[int], fused: np.ndarray) -> list[int]:
    """Candidates by fused score, best first; ties keep the base order (`candidates` is in base order)."""
    idx = np.argsort(-np.asarray(fused), kind="stable")
    return [candidates[i] for i in idx]
