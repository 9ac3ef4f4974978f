"""The method every other is marked against: the strongest baseline by validation, or the one configured.

Chosen on validation, never on test: each trained model's `TrainingLog.best_validation_ndcg10` (its own fold's
validation slice) averaged over the folds and seeds it ran. Baselines are the methods that are neither the GAT
family (`gat`, `gat-id`, `gat-paper`, `gat/<ablation>`) nor reranked lists (`<base>+<strategy>`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl

from rerank.method import Method

AUTO = "auto"
VALIDATION_SCORE = "best_validation_ndcg10"


def is_baseline(name: str) -> bool:
    method = Method.parse(name)
    gat_family = method.base == "gat" or method.base.startswith("gat-")
    return not (gat_family or method.is_reranked)


def validation_scores(logs: pl.DataFrame) -> dict[str, float]:
    """Mean validation NDCG@10 per model over its (fold, seed) fits; models without a finite score are absent."""
    if logs.is_empty() or not {"model", VALIDATION_SCORE} <= set(logs.columns):
        return {}
    means = (
        logs.select("model", pl.col(VALIDATION_SCORE).cast(pl.Float64))
        .filter(pl.col(VALIDATION_SCORE).is_finite())
        .group_by("model")
        .agg(pl.col(VALIDATION_SCORE).mean())
    )
    return dict(zip(means["model"].to_list(), means[VALIDATION_SCORE].to_list(), strict=False))


def choose_reference(setting: str, methods: Sequence[str], logs: pl.DataFrame) -> tuple[str, str]:
    """(reference, why) for `evaluation.reference` = `setting` among the run's `methods` (in table order).

    `auto`: the baseline with the best mean validation NDCG@10; baselines without a validation score (e.g.
    popularity, which has nothing to select) only when no baseline has one, then the first in table order. With
    no baseline in the run, the same rule over every method that is not reranked."""
    if setting != AUTO:
        return setting, "set by evaluation.reference"
    pool = (
        [m for m in methods if is_baseline(m)]
        or [m for m in methods if not Method.parse(m).is_reranked]
        or list(methods)
    )
    if not pool:
        return setting, "no method ran"
    scores = {m: s for m, s in validation_scores(logs).items() if m in pool and math.isfinite(s)}
    if scores:
        best = max(pool, key=lambda m: scores.get(m, -math.inf))  # ties: the first in table order
        kind = "baselines" if is_baseline(best) else "methods"
        return best, f"auto: best mean validation NDCG@10 among {kind}, {scores[best]:.4f}"
    return pool[0], "auto: no validation score in this run; the first baseline"
