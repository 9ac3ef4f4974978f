"""One fold's evaluation: every configured protocol, for all users and for the cold-start segment."""

from __future__ import annotations

import polars as pl

from evaluation.config import EvaluationConfig
from evaluation.metrics import cold_start_users, evaluate

SEGMENTS = ("all", "cold-start")


def cold_start_segment(n: int) -> str:
    """The segment of the cold-start protocol's users truncated to n training ratings."""
    return f"cold-start-n{n}"


def evaluate_fold(
    recs: pl.DataFrame,
    train: pl.DataFrame,
    test: pl.DataFrame,
    *,
    cfg: EvaluationConfig,
    relevance_threshold: float,
    n_items: int,
    cold_start_plan: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-user and catalog metrics with `protocol` and `segment` columns added.

    `train` is the fold's whole training side (validation slice included): it defines what counts as a
    cold-start user and the popularity behind novelty. With a `cold_start_plan` (`user_idx, n`: a cold-start
    protocol fold, whose training side is truncated for those users), the segments are instead the plan's users
    per n (`cold-start-n<n>`); nobody else is evaluated on such a fold.
    """
    groups: dict[str, pl.Series | None]
    if cold_start_plan is None:
        cold = cold_start_users(train, cfg.cold_start_max)
        groups = {"all": None, "cold-start": cold}
    else:
        groups = {
            cold_start_segment(int(n)): part["user_idx"]
            for (n,), part in cold_start_plan.sort("n").group_by("n", maintain_order=True)
        }
    per_user, catalog = [], []
    for protocol in cfg.protocols:
        for segment, users in groups.items():
            seg_recs, seg_test = recs, test
            if users is not None:
                seg_recs = recs.filter(pl.col("user_idx").is_in(users.implode()))
                seg_test = test.filter(pl.col("user_idx").is_in(users.implode()))
            result = evaluate(
                seg_recs,
                seg_test,
                protocol=protocol,
                k=list(cfg.k),
                relevance_threshold=relevance_threshold,
                train=train,
                n_items=n_items,
            )
            labels = [pl.lit(protocol).alias("protocol"), pl.lit(segment).alias("segment")]
            per_user.append(result.per_user.with_columns(labels))
            catalog.append(result.catalog.with_columns(labels))
    return pl.concat(per_user, how="vertical_relaxed"), pl.concat(catalog, how="vertical_relaxed")
