"""Paired confidence intervals of a method against its base: user-level bootstrap of per-user differences.

Fold means with fold-std error bars mix two things: how hard each fold is (the official folds differ by design)
and how the method differs from its base. Pairing each (fold, user) with itself removes the first: the interval is
a percentile bootstrap (scipy.stats.bootstrap) of the mean per-user difference over all (fold, user) pairs both
methods scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.stats import bootstrap

CI_SCHEMA = {
    "model": pl.String,
    "base": pl.String,
    "protocol": pl.String,
    "segment": pl.String,
    "metric": pl.String,
    "k": pl.Int64,
    "n_pairs": pl.Int64,
    "mean_diff": pl.Float64,
    "low": pl.Float64,
    "high": pl.Float64,
}


def mean_ci(diffs: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `diffs` (a point when they are all equal; NaN when < 2)."""
    if len(diffs) < 2:
        return float("nan"), float("nan")
    if np.all(diffs == diffs[0]):
        return float(diffs[0]), float(diffs[0])
    # The pyright ignore below: scipy adds `random_state` with a decorator its signature does not show
    result = bootstrap(
        (diffs,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(seed),  # pyright: ignore[reportCallIssue]
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_intervals(
    per_user: pl.DataFrame,
    pairs: Sequence[tuple[str, str]],
    *,
    metrics: Sequence[str],
    k: int,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> pl.DataFrame:
    """One row per (method, base, protocol, segment, metric) at `k`: mean per-user difference (method − base) and
    its bootstrap interval over the (fold, user) pairs both scored."""
    on = ["protocol", "segment", "metric", "k", "fold", "user_idx"]
    part = per_user.filter(pl.col("metric").is_in(list(metrics)) & (pl.col("k") == k))
    rows = []
    for model, base in pairs:
        ref = part.filter(pl.col("model") == base).select(on + [pl.col("value").alias("ref")])
        joined = part.filter(pl.col("model") == model).select(on + ["value"]).join(ref, on=on, how="inner")
        for (protocol, segment, metric), group in joined.group_by("protocol", "segment", "metric", maintain_order=True):
            d = (group["value"] - group["ref"]).to_numpy()
            low, high = mean_ci(d, confidence, resamples, seed)
            rows.append((model, base, protocol, segment, metric, k, len(d), float(d.mean()), low, high))
    return pl.DataFrame(rows, schema=CI_SCHEMA, orient="row")
