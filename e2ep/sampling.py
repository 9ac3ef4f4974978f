"""Seeded user samples for the paid (LLM) stages: one sample per setting, the same for every fold and strategy.

The sample of k users is the first k of one seeded permutation of all user indices, so with the same seed a smaller
sample lies inside a larger one (`rerank.max_users` <= `profiles.max_users` reranks only users whose profiles the
LLM wrote).
"""

from __future__ import annotations

import numpy as np


def user_sample(n_users: int, k: int | None, seed: int) -> list[int] | None:
    """Sorted user indices of the sample, or None (every user) when `k` is None or covers them all."""
    if k is None or k >= n_users:
        return None
    order = np.random.default_rng([seed, 0x5A3]).permutation(n_users)
    return sorted(int(u) for u in order[:k])
