"""The seed authors' evaluation protocol ("paper"), reproduced exactly, skipping rules included.

Evaluation users are those present in both `test` and `recs`. For user u and cut-off k:

* F = the items of u's list at positions ≤ k that occur anywhere in u's test set (any rating), in list order,
  renumbered p = 1, 2, …;  R = u's relevant test items (rating ≥ threshold);  hit_p = 1 if F[p] ∈ R.
* Precision@k = Σ hit_p / |F|                      (u skipped if F is empty)
* Recall@k    = Σ hit_p / |R|                      (u skipped if R is empty)
* NDCG@k      = Σ hit_p / log2(p+1) / IDCG,  IDCG = Σ_{i=1}^{min(|R|,k)} 1/log2(i+1)   (skipped if F or R empty)
* MRR@k       = 1 / (first p with hit_p = 1)       (only users with ≥1 hit)
* MAP@k       = Σ_{j-th hit, at p} (j / p) / |R|   (only users with ≥1 hit)
* Coverage@k  = |∪_u F_u| / |distinct items in the whole test set|
* Each aggregate is the mean over the users included for that metric, 0.0 if none.

Why the same list scores far higher here than under `full`: the filter throws away every recommended item the
user never rated in the test fold, so the model is no longer asked to find relevant items among ~all unseen
items; it is only asked to order the handful the user happened to rate, most of which are relevant (MovieLens
ratings skew high: ~55-60% are ≥ 4). Precision divides by |F| (often 1-3 items) instead of k, and MAP/MRR drop
every user without a hit from the mean, so failures are never counted. E.g. a list with one rated item,
relevant, at position 40 gives P@5 = 0 under `full` but is simply skipped at k=5 and gives P@50 = 1 here.
No hit_rate or novelty: the authors define none.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from evaluation.ranking import CATALOG_SCHEMA, EvaluationResult, dense_flags, ideal_dcg, long_frame, normalize_recs

PAPER_METRICS = ("precision", "recall", "ndcg", "map", "mrr")


def evaluate_paper(
    recs: pl.DataFrame, test: pl.DataFrame, *, k: list[int], relevance_threshold: float = 4.0
) -> EvaluationResult:
    """Vectorised paper protocol; `k` already validated and sorted (see `evaluation.metrics.evaluate`)."""
    max_k = k[-1]
    t = (
        test.select(
            pl.col("user_idx").cast(pl.Int64),
            pl.col("item_idx").cast(pl.Int64),
            rel=pl.col("rating") >= relevance_threshold,
        )
        .group_by("user_idx", "item_idx")
        .agg(pl.col("rel").any())
    )
    r = normalize_recs(recs, max_k)
    users = np.intersect1d(t["user_idx"].unique().to_numpy(), r["user_idx"].unique().to_numpy())
    n_rel = (
        t.filter(pl.col("rel"))
        .group_by("user_idx")
        .len()
        .join(pl.DataFrame({"user_idx": users}, schema={"user_idx": pl.Int64}), on="user_idx", how="right")
    )
    n_rel = n_rel.sort("user_idx")["len"].fill_null(0).to_numpy().astype(np.float64)
    f_rows = r.join(t, on=["user_idx", "item_idx"], how="inner")  # recs rated in test: users ⊂ `users`
    in_test = dense_flags(users, f_rows, None, max_k)
    rel = dense_flags(users, f_rows, "rel", max_k)
    fpos = np.maximum(np.cumsum(in_test, axis=1), 1).astype(np.float64)  # position within F
    gain = np.where(rel, 1.0 / np.log2(fpos + 1.0), 0.0)
    idcg = ideal_dcg(max_k)
    parts = []
    coverage = []
    n_test_items = test["item_idx"].n_unique()
    for kk in k:
        in_f, h = in_test[:, :kk], rel[:, :kk]
        n_f = in_f.sum(axis=1).astype(np.float64)
        hits = h.sum(axis=1).astype(np.float64)
        has_f, has_r, has_hit = n_f > 0, n_rel > 0, hits > 0
        j = np.cumsum(h, axis=1)
        first = fpos[np.arange(len(users)), np.argmax(h, axis=1)] if len(users) else np.zeros(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            parts += [
                ("precision", kk, hits / n_f, has_f),
                ("recall", kk, hits / n_rel, has_r),
                ("ndcg", kk, gain[:, :kk].sum(axis=1) / idcg[np.minimum(n_rel, kk).astype(int)], has_f & has_r),
                ("mrr", kk, 1.0 / first, has_hit),
                ("map", kk, np.where(h, j / fpos[:, :kk], 0.0).sum(axis=1) / n_rel, has_hit),
            ]
        f_items = f_rows.filter(pl.col("pos") <= kk)["item_idx"].n_unique()
        coverage.append(f_items / n_test_items if n_test_items else 0.0)
    catalog = pl.DataFrame({"metric": ["coverage"] * len(k), "k": k, "value": coverage}, schema=CATALOG_SCHEMA)
    return EvaluationResult(long_frame(users, parts), catalog, len(users), "paper", PAPER_METRICS, tuple(k))
