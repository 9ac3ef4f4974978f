"""One fold's evaluation: every configured protocol, for all users and for the cold-start segment."""

from __future__ import annotations

import polars as pl

from e2ep.config import EvaluationConfig
from evaluation.metrics import cold_start_users, evaluate

SEGMENTS = ("all", "cold-start")


def evaluate_fold(recs: pl.DataFrame, train: pl.DataFrame, test: pl.DataFrame, *, cfg: EvaluationConfig,
                  relevance_threshold: float, n_items: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-user and catalog metrics with `protocol` and `segment` columns added.

    `train` is the fold's whole training side (validation slice included): it defines what counts as a
    cold-start user and the popularity behind novelty.
    """
    cold = cold_start_users(train, cfg.cold_start_max)
    per_user, catalog = [], []
    for protocol in cfg.protocols:
        for segment in SEGMENTS:
            seg_recs, seg_test = recs, test
            if segment == "cold-start":
                seg_recs = recs.filter(pl.col("user_idx").is_in(cold.implode()))
                seg_test = test.filter(pl.col("user_idx").is_in(cold.implode()))
            result = evaluate(seg_recs, seg_test, protocol=protocol, k=list(cfg.k),
                              relevance_threshold=relevance_threshold, train=train, n_items=n_items)
            labels = [pl.lit(protocol).alias("protocol"), pl.lit(segment).alias("segment")]
            per_user.append(result.per_user.with_columns(labels))
            catalog.append(result.catalog.with_columns(labels))
    return pl.concat(per_user, how="vertical_relaxed"), pl.concat(catalog, how="vertical_relaxed")
