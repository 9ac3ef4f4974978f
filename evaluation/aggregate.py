"""Fold aggregation and paired significance tests over per-user metric frames.

Inputs are `EvaluationResult.per_user` / `.catalog` frames concatenated with the columns
`model, fold, protocol, segment`. A fold's score is the mean over its included users (0.0 when, under the
paper protocol, nobody qualified in that fold); the reported `mean`/`std` are over folds, so each fold weighs
the same whatever its user count.

Significance: two-sided Wilcoxon signed-rank test on per-user differences (model − reference), paired on
(fold, user_idx) pairs that both methods scored. p-values are *uncorrected* for the many (model, metric, k,
segment) comparisons; apply Holm/Bonferroni yourself before claiming a family of wins.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.stats import wilcoxon

GROUP = ["model", "protocol", "segment"]
KEY = GROUP + ["metric", "k"]
SUMMARY_SCHEMA = {"model": pl.String, "protocol": pl.String, "segment": pl.String, "metric": pl.String,
                  "k": pl.Int64, "mean": pl.Float64, "std": pl.Float64, "n_folds": pl.Int64, "n_users": pl.Int64}
TESTS_SCHEMA = {"model": pl.String, "protocol": pl.String, "segment": pl.String, "metric": pl.String,
                "k": pl.Int64, "n_pairs": pl.Int64, "p_value": pl.Float64, "mean_diff": pl.Float64}


def _check(df: pl.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; has {df.columns}")


def summarize(per_user: pl.DataFrame, catalog: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per (model, protocol, segment, metric, k): `mean`, `std` (ddof=1 over folds, 0 for one fold),
    `n_folds`, `n_users` (user-fold pairs included; null for catalog metrics such as coverage)."""
    _check(per_user, KEY + ["fold", "user_idx", "value"], "per_user")
    fold_means = per_user.group_by(KEY + ["fold"]).agg(value=pl.col("value").mean(), n=pl.len().cast(pl.Int64))
    # Every fold a (model, protocol, segment) was run on counts for each of its metric/k; a fold where no user
    # qualified contributes 0.0 (the protocol's "mean over nobody" rule), not a silently smaller n_folds.
    folds = per_user.select(GROUP + ["fold"])
    if catalog is not None and catalog.height:
        _check(catalog, KEY + ["fold", "value"], "catalog")
        folds = pl.concat([folds, catalog.select(GROUP + ["fold"]).cast(folds.schema)])
    folds = folds.unique()
    grid = folds.join(per_user.select(KEY).unique(), on=GROUP, how="inner")
    fold_means = grid.join(fold_means, on=KEY + ["fold"], how="left").with_columns(
        pl.col("value").fill_null(0.0), pl.col("n").fill_null(0))
    parts = [fold_means]
    if catalog is not None and catalog.height:
        cat = catalog.select(KEY + ["fold", "value"]).cast({"k": pl.Int64})
        parts.append(cat.with_columns(n=pl.lit(None, pl.Int64)).select(fold_means.columns)
                     .cast(fold_means.schema))
    out = pl.concat(parts).group_by(KEY).agg(
        mean=pl.col("value").mean(),
        std=pl.when(pl.len() > 1).then(pl.col("value").std(ddof=1)).otherwise(0.0),
        n_folds=pl.len().cast(pl.Int64),
        n_users=pl.col("n").sum().cast(pl.Int64),
        _has_users=pl.col("n").is_not_null().any())
    out = out.with_columns(n_users=pl.when(pl.col("_has_users")).then(pl.col("n_users"))).drop("_has_users")
    return out.select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA).sort(KEY)


def paired_tests(per_user: pl.DataFrame, reference: str) -> pl.DataFrame:
    """Wilcoxon signed-rank (two-sided) of every other model vs `reference`, per (protocol, segment, metric, k).

    `n_pairs`: (fold, user) pairs scored by both. `p_value` is 1.0 when all differences are zero, NaN with
    fewer than 2 pairs. `mean_diff` = mean(model − reference). Uncorrected for multiple comparisons.
    Empty when `reference` was not run (nothing to compare against; tables then show no markers).
    """
    _check(per_user, KEY + ["fold", "user_idx", "value"], "per_user")
    if reference not in per_user["model"].unique().to_list():  # e.g. a run without the reference model
        return pl.DataFrame(schema=TESTS_SCHEMA)
    on = ["protocol", "segment", "metric", "k", "fold", "user_idx"]
    ref = per_user.filter(pl.col("model") == reference).select(on + [pl.col("value").alias("ref")])
    pairs = (per_user.filter(pl.col("model") != reference).select(["model"] + on + ["value"])
             .join(ref, on=on, how="inner").with_columns(diff=pl.col("value") - pl.col("ref")))
    rows = []
    for key, grp in pairs.group_by(KEY, maintain_order=True):
        d = grp["diff"].to_numpy()
        rows.append((*key, len(d), _wilcoxon_p(d), float(d.mean()) if len(d) else float("nan")))
    # (model, slice) combinations with no common users at all still get a row, with NaN.
    have = {r[:5] for r in rows}
    for key in per_user.filter(pl.col("model") != reference).select(KEY).unique().iter_rows():
        if key not in have:
            rows.append((*key, 0, float("nan"), float("nan")))
    return pl.DataFrame(rows, schema=TESTS_SCHEMA, orient="row").sort(KEY)


def _wilcoxon_p(d: np.ndarray) -> float:
    if len(d) < 2:
        return float("nan")
    if np.all(d == 0):
        return 1.0
    return float(wilcoxon(d, alternative="two-sided").pvalue)
