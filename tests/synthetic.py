"""Tiny datasets with planted structure: as the generic ratings CSV, or as a ready fold for the recommenders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from models.base import FoldData, Recommender
from models.config import TrainingConfig


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


def csv_run_args(ratings: Path, folds: str) -> list[str]:
    """`e2ep run` flags for a ratings file (e.g. `write_planted_csv`'s) split into 3 random folds, running `folds`."""
    return ["--dataset", "csv", "--ratings", str(ratings), "--n-folds", "3", "--folds", folds]


N_USERS, CLUSTER, N_POP = 40, 15, 2  # per group; items per cluster; extra "popular" items liked by everyone
# Training settings sized for `planted_fold`: a few seconds per fit on a laptop CPU.
FAST_TRAINING = TrainingConfig(max_epochs=60, eval_every=5, patience=3, batch_size=64, embedding_dim=16, device="cpu")


def _frame(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"user_idx": pl.Int64, "item_idx": pl.Int64, "rating": pl.Float64}, orient="row")


def planted_fold(seed: int = 0) -> tuple[FoldData, torch.Tensor]:
    """Two user groups, each liking one item cluster (plus items everyone likes, and one explicit dislike each).

    Returns the fold and `[2, E]` held-out (user, item) pairs of the user's own cluster, never shown to a model.
    """
    rng = np.random.default_rng(seed)
    n_items = 2 * CLUSTER + N_POP
    train, validation, held = [], [], []
    for u in range(2 * N_USERS):
        group = u % 2
        own = rng.permutation(np.arange(group * CLUSTER, (group + 1) * CLUSTER))
        train += [(u, int(i), 5.0) for i in own[:8]]
        train += [(u, 2 * CLUSTER + k, 4.0) for k in range(N_POP)]
        train.append((u, int(rng.integers(CLUSTER) + (1 - group) * CLUSTER), 1.0))  # an explicit dislike
        validation += [(u, int(i), 5.0) for i in own[8:10]]
        held += [(u, int(i)) for i in own[10:]]
    data = FoldData(n_users=2 * N_USERS, n_items=n_items, train=_frame(train), validation=_frame(validation))
    return data, torch.tensor(held).T


def held_out_auc(model: Recommender, data: FoldData, held: torch.Tensor) -> float:
    """Mean over users of P(score(held-out own-cluster item) > score(unseen other-cluster item)); random: 0.5."""
    users = torch.arange(data.n_users)
    scores = model.score(users).float().cpu()
    seen = torch.zeros(data.n_users, data.n_items, dtype=torch.bool)
    seen[data.seen_pairs[0], data.seen_pairs[1]] = True
    aucs = []
    for u in range(data.n_users):
        own = held[1][held[0] == u]
        group = u % 2
        other = torch.arange((1 - group) * CLUSTER, (2 - group) * CLUSTER)
        other = other[~seen[u, other]]
        diff = scores[u, own].unsqueeze(1) - scores[u, other].unsqueeze(0)
        aucs.append(((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item())
    return float(np.mean(aucs))


def assert_recommends_unseen_best_first(model, data) -> None:
    """Top-10 lists (in odd-sized batches) hold no training item and come best first."""
    users = torch.arange(data.n_users)
    items, scores = model.recommend(users, k=10, exclude=data.seen_pairs, batch_size=7)
    assert items.shape == scores.shape == (data.n_users, 10)
    recommended = set(zip(users.repeat_interleave(10).tolist(), items.flatten().tolist(), strict=True))
    assert not recommended & set(zip(*data.seen_pairs.tolist(), strict=True))
    assert (scores[:, :-1] >= scores[:, 1:]).all()
