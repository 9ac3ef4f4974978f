"""Aggregation over runs and user-level paired significance tests over per-user metric frames.

Inputs are `EvaluationResult.per_user` / `.catalog` frames concatenated with the columns
`model, fold, protocol, segment` and, when several training seeds ran, `seed` (absent: one seed, 0). A run is
one (fold, seed); its score is the mean over its included users (0.0 when, under the paper protocol, nobody
qualified in that run). The reported `mean`/`std` are over runs (folds × seeds), so each run weighs the same
whatever its user count.

Significance (`paired_tests`): users, not (fold, user) pairs, are the units. Each user is tested in up to five
folds that share most of their training data, so their (fold, user) values are correlated; treating them as
independent pairs overstates the evidence. A user's value for a method in a fold is its mean over the seeds it
ran; the user's difference is the mean over the folds where both methods scored them; those ~943 user means
(ML-100K) are the pairs.

Test: two-sided Wilcoxon signed-rank (scipy) on the user-mean differences. Chosen over a sign-flip permutation
test because per-user ranking metrics are zero-inflated and heavy-tailed (a rank test is robust there), it is
exact for the small cold-start segment, and one call per comparison keeps a report with hundreds of comparisons
fast. Next to it: the mean difference with a 95 % percentile bootstrap CI over users (seeded).

Multiple comparisons: Holm (step-down Bonferroni) across the methods compared with the same reference within one
family = (protocol, segment, metric, k): "which methods differ from the reference on this column" is the claim a
table mark makes. Families are not pooled across metrics, cut-offs or segments (they are different claims).

Not tested: paper-protocol MAP and MRR average only users with at least one hit, so two methods are averaged over
different user sets chosen by their own success; they get `p_value` NaN and a `note`. (Paper-protocol precision
and NDCG also skip users whose filtered list is empty; they are paired over users both methods include.)
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.stats import wilcoxon

GROUP = ["model", "protocol", "segment"]
KEY = GROUP + ["metric", "k"]
FAMILY = ["protocol", "segment", "metric", "k"]
RUN = ["fold", "seed"]
SUMMARY_SCHEMA = {
    "model": pl.String,
    "protocol": pl.String,
    "segment": pl.String,
    "metric": pl.String,
    "k": pl.Int64,
    "mean": pl.Float64,
    "std": pl.Float64,
    "n_runs": pl.Int64,
    "n_folds": pl.Int64,
    "n_seeds": pl.Int64,
    "n_users": pl.Int64,
}
TESTS_SCHEMA = {
    "model": pl.String,
    "protocol": pl.String,
    "segment": pl.String,
    "metric": pl.String,
    "k": pl.Int64,
    "n_users": pl.Int64,
    "mean_diff": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "p_value": pl.Float64,
    "p_holm": pl.Float64,
    "note": pl.String,
}
UNPAIRED = {("paper", "map"), ("paper", "mrr")}
UNPAIRED_NOTE = "not tested: the paper protocol averages MAP/MRR over users with a hit only (unpaired user sets)"
N_BOOTSTRAP = 2000
CONFIDENCE = 0.95


def _check(df: pl.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; has {df.columns}")


def with_seed(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with a `seed` column (0 when it has none: a one-seed run)."""
    if "seed" in frame.columns:
        return frame.with_columns(pl.col("seed").cast(pl.Int64))
    return frame.with_columns(seed=pl.lit(0, pl.Int64))


def summarize(per_user: pl.DataFrame, catalog: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per (model, protocol, segment, metric, k): `mean` and `std` (ddof=1) over runs (fold × seed;
    `std` null for a single run), `n_runs`, `n_folds`, `n_seeds`, `n_users` ((fold,
    user) pairs included; null for catalog metrics such as coverage)."""
    _check(per_user, KEY + ["fold", "user_idx", "value"], "per_user")
    per_user = with_seed(per_user)
    run_means = per_user.group_by(KEY + RUN).agg(value=pl.col("value").mean())
    # Every run a (model, protocol, segment) had counts for each of its metric/k; a run where no user qualified
    # contributes 0.0 (the protocol's "mean over nobody" rule), not a silently smaller n_runs.
    runs = per_user.select(GROUP + RUN)
    if catalog is not None and catalog.height:
        _check(catalog, KEY + ["fold", "value"], "catalog")
        catalog = with_seed(catalog)
        runs = pl.concat([runs, catalog.select(GROUP + RUN).cast(runs.schema)])
    runs = runs.unique()
    grid = runs.join(per_user.select(KEY).unique(), on=GROUP, how="inner")
    run_means = grid.join(run_means, on=KEY + RUN, how="left").with_columns(pl.col("value").fill_null(0.0))
    parts = [run_means.with_columns(user_metric=pl.lit(True))]
    if catalog is not None and catalog.height:
        cat = catalog.select(KEY + RUN + ["value"]).cast({"k": pl.Int64})
        parts.append(cat.with_columns(user_metric=pl.lit(False)).select(parts[0].columns).cast(parts[0].schema))
    # sorted first: a group's values are summed in row order, so the same input gives the same last bits
    out = (
        pl.concat(parts)
        .sort(KEY + RUN)
        .group_by(KEY)
        .agg(
            mean=pl.col("value").mean(),
            std=pl.when(pl.len() > 1).then(pl.col("value").std(ddof=1)),
            n_runs=pl.len().cast(pl.Int64),
            n_folds=pl.col("fold").n_unique().cast(pl.Int64),
            n_seeds=pl.col("seed").n_unique().cast(pl.Int64),
            user_metric=pl.col("user_metric").any(),
        )
    )
    pairs = per_user.select(KEY + ["fold", "user_idx"]).unique().group_by(KEY).agg(n_users=pl.len().cast(pl.Int64))
    out = out.join(pairs, on=KEY, how="left").with_columns(
        n_users=pl.when(pl.col("user_metric")).then(pl.col("n_users").fill_null(0))
    )
    # The pyright ignore below: polars types a schema mapping's keys invariantly, so it refuses a dict[str, ...]
    return out.select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA).sort(KEY)  # pyright: ignore[reportArgumentType]


def user_differences(per_user: pl.DataFrame, reference: str) -> pl.DataFrame:
    """Per (model, protocol, segment, metric, k, user_idx): `diff` = the user's mean over folds of (model −
    reference), each side first averaged over its seeds in that fold, over the folds where both scored the user."""
    _check(per_user, KEY + ["fold", "user_idx", "value"], "per_user")
    cell = KEY + ["fold", "user_idx"]
    # Sorted before each mean: a group's values are summed in row order, and a group_by's output order varies
    # from call to call, so without it the same input gave differences (and Wilcoxon p-values) that moved in
    # their last bits between runs.
    by_seed = per_user.sort(cell + ["seed"]) if "seed" in per_user.columns else per_user.sort(cell)
    seed_means = by_seed.group_by(cell).agg(pl.col("value").mean())
    on = FAMILY + ["fold", "user_idx"]
    ref = seed_means.filter(pl.col("model") == reference).select(on + [pl.col("value").alias("ref")])
    return (
        seed_means.filter(pl.col("model") != reference)
        .join(ref, on=on, how="inner")
        .sort(KEY + ["user_idx", "fold"])
        .group_by(KEY + ["user_idx"])
        .agg(diff=(pl.col("value") - pl.col("ref")).mean())
    )


def paired_tests(
    per_user: pl.DataFrame,
    reference: str,
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> pl.DataFrame:
    """Every other model vs `reference` per (protocol, segment, metric, k), at the user level (module docstring).

    `n_users`: users both methods scored; `mean_diff` = mean over those users of (model − reference), with the
    `confidence` percentile bootstrap CI `ci_low`..`ci_high` (users resampled, `n_bootstrap` draws, `seed`);
    `p_value`: two-sided Wilcoxon signed-rank (1.0 when every difference is 0, NaN with fewer than 2 users);
    `p_holm`: Holm-adjusted within the family (protocol, segment, metric, k). Paper-protocol MAP/MRR rows carry
    NaN statistics and a `note`. Empty when `reference` was not run (tables then show no marks).
    """
    _check(per_user, KEY + ["fold", "user_idx", "value"], "per_user")
    if reference not in per_user["model"].unique().to_list():  # e.g. a run without the reference model
        return pl.DataFrame(schema=TESTS_SCHEMA)
    diffs = user_differences(per_user, reference).sort(KEY + ["user_idx"])
    groups = {key: frame["diff"].to_numpy() for key, frame in diffs.group_by(KEY, maintain_order=True)}
    keys = [tuple(k) for k in per_user.filter(pl.col("model") != reference).select(KEY).unique().sort(KEY).rows()]
    tested = {k: groups.get(k, np.zeros(0)) for k in keys if (k[1], k[3]) not in UNPAIRED}
    ci = iter(bootstrap_mean_ci(list(tested.values()), n_bootstrap=n_bootstrap, confidence=confidence, seed=seed))
    rows = []
    for key in keys:
        if key not in tested:
            rows.append((*key, len(groups.get(key, ())), None, None, None, None, None, UNPAIRED_NOTE))
            continue
        d = tested[key]
        low, high = next(ci)
        rows.append((*key, len(d), float(d.mean()) if len(d) else None, low, high, wilcoxon_p(d), None, None))
    out = pl.DataFrame(rows, schema=TESTS_SCHEMA, orient="row").with_columns(pl.col(pl.Float64).fill_null(float("nan")))
    return out.with_columns(p_holm=pl.col("p_value").map_batches(holm_adjust).over(FAMILY)).sort(KEY)


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of `d` (zero differences dropped, scipy's default).

    Exact null distribution for up to 50 non-zero differences without ties, else the normal approximation with
    tie correction (R's `wilcox.test` rule). scipy's `auto` would run a permutation test for small samples with
    ties (per-user metrics of a small cold-start segment are full of them): ~1 s per call instead of ~1 ms."""
    if len(d) < 2:
        return float("nan")
    if np.all(d == 0):
        return 1.0
    nonzero = d[d != 0]
    exact = len(nonzero) <= 50 and len(np.unique(np.abs(nonzero))) == len(nonzero)
    result = wilcoxon(d, alternative="two-sided", method="exact" if exact else "asymptotic")
    return float(result.pvalue)  # pyright: ignore[reportAttributeAccessIssue]  # scipy's result type is untyped


def holm_adjust(p: pl.Series | np.ndarray) -> pl.Series:
    """Holm step-down adjusted p-values: sort the m finite p ascending, p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)
    p_(j)); reject H_i at level α iff p̃_i ≤ α. NaN p-values (nothing tested) stay NaN and do not count in m."""
    values = np.asarray(p, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(values))
    m = len(finite)
    if m:
        order = finite[np.argsort(values[finite], kind="stable")]
        scaled = np.minimum(1.0, (m - np.arange(m)) * values[order])
        out[order] = np.maximum.accumulate(scaled)
    return pl.Series(out)


def bootstrap_mean_ci(
    samples: list[np.ndarray], *, n_bootstrap: int = N_BOOTSTRAP, confidence: float = CONFIDENCE, seed: int = 0
) -> list[tuple[float | None, float | None]]:
    """Percentile bootstrap CI of the mean of each sample (units resampled with replacement).

    Vectorised: samples of the same size share one `n_bootstrap × n` matrix of resampling counts (seeded by
    (`seed`, n), so a CI does not depend on which other comparisons ran), and all their resampled means are one
    matrix product. Samples with fewer than 2 values get (None, None)."""
    tail = (1.0 - confidence) / 2
    out: list[tuple[float | None, float | None]] = [(None, None)] * len(samples)
    by_size: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        if len(s) >= 2:
            by_size.setdefault(len(s), []).append(i)
    for n, members in by_size.items():
        draws = np.random.default_rng([seed, n]).integers(0, n, size=(n_bootstrap, n))
        draws += np.arange(n_bootstrap)[:, None] * n  # one bincount gives every row's counts
        counts = np.bincount(draws.ravel(), minlength=n_bootstrap * n).reshape(n_bootstrap, n).astype(np.float64)
        means = counts @ np.stack([samples[i] for i in members], axis=1) / n  # (n_bootstrap, len(members))
        low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
        for j, i in enumerate(members):
            out[i] = (float(low[j]), float(high[j]))
    return out
