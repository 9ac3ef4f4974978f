"""Tiny datasets with planted structure, written as the generic ratings CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def planted_ratings(n_users: int = 60, n_items: int = 40, per_user: int = 14, seed: int = 0) -> pl.DataFrame:
    """Two taste groups: even users love the first half of the catalog and dislike the second, odd users the reverse."""
    rng = np.random.default_rng(seed)
    rows = []
    half = n_items // 2
    for user in range(1, n_users + 1):
        liked = np.arange(1, half + 1) if user % 2 == 0 else np.arange(half + 1, n_items + 1)
        disliked = np.setdiff1d(np.arange(1, n_items + 1), liked)
        n_like = int(per_user * 0.8)
        for item in rng.choice(liked, n_like, replace=False):
            rows.append((user, int(item), int(rng.choice([4, 5])), 1_000_000 + len(rows)))
        for item in rng.choice(disliked, per_user - n_like, replace=False):
            rows.append((user, int(item), int(rng.choice([1, 2, 3])), 1_000_000 + len(rows)))
    return pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row")


def write_planted_csv(directory: Path, **kwargs) -> Path:
    path = directory / "ratings.csv"
    planted_ratings(**kwargs).write_csv(path)
    return path
