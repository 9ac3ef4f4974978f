"""Top-k ranking metrics under the standard "full" protocol, and the shared `evaluate` entry point.

Full protocol (our default). A user is evaluated iff they have at least one *relevant* test item
(rating >= threshold); their list is assumed to already exclude training items. Let ``hit_r`` = 1 if the item
at position r of the user's list is relevant, ``rel`` = number of relevant test items, and positions r = 1..k:

* Precision@k = Σ_{r≤k} hit_r / k  (a short list is penalised: the denominator is always k)
* Recall@k = Σ_{r≤k} hit_r / rel
* NDCG@k = DCG/IDCG, DCG = Σ_{r≤k} hit_r / log2(r+1), IDCG = Σ_{i=1}^{min(rel,k)} 1 / log2(i+1)
* MAP@k = Σ_{r≤k} hit_r · P@r / min(rel, k)
* MRR@k = 1 / (first r ≤ k with hit_r = 1), 0 if none;  HitRate@k = 1 if any hit in the top k
* Novelty@k (only with `train`) = mean over the user's top-k items of −log2 p_i, p_i = (n_i + 1) / (N + 1),
  n_i = number of distinct training users who rated i (any rating), N = number of distinct training users.
  The +1 smoothing keeps items unseen in training finite (they get the maximum, log2(N+1)). Users with an
  empty list have no novelty row.
* Coverage@k (catalog) = |distinct items in the top-k of every user in `recs`| / n_items.

A user with no recommendations is still evaluated (all accuracy metrics 0), so a model that skips users cannot
look better. Lists are renumbered per user in `rank` order (ties keep input order; a repeated item keeps its
best rank), so "top-k" means the first k distinct items, whatever the stored rank values are.

Everything is computed on dense (users × max k) numpy matrices: 6040 users × 50 recs takes milliseconds.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from evaluation.paper_protocol import evaluate_paper
from evaluation.ranking import (
    CATALOG_SCHEMA,
    EvaluationResult,
    check_k,
    dense_flags,
    ideal_dcg,
    long_frame,
    normalize_recs,
    require_columns,
)

FULL_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate", "novelty")


def evaluate(
    recs: pl.DataFrame,
    test: pl.DataFrame,
    *,
    protocol: Literal["full", "paper"],
    k: list[int],
    relevance_threshold: float = 4.0,
    train: pl.DataFrame | None = None,
    n_items: int | None = None,
) -> EvaluationResult:
    """Score `recs` against `test` under `protocol` ("full": this module; "paper": see paper_protocol)."""
    ks = check_k(k)
    require_columns(test, ("user_idx", "item_idx", "rating"), "test")
    if protocol == "paper":
        return evaluate_paper(recs, test, k=ks, relevance_threshold=relevance_threshold)
    if protocol != "full":
        raise ValueError(f"protocol must be 'full' or 'paper', got {protocol!r}")
    if n_items is None or n_items <= 0:
        raise ValueError("the full protocol needs n_items (catalog size) for coverage")
    return _evaluate_full(recs, test, ks, relevance_threshold, train, n_items)


def _evaluate_full(
    recs: pl.DataFrame, test: pl.DataFrame, ks: list[int], threshold: float, train: pl.DataFrame | None, n_items: int
) -> EvaluationResult:
    max_k = ks[-1]
    rel = (
        test.filter(pl.col("rating") >= threshold)
        .select(pl.col("user_idx").cast(pl.Int64), pl.col("item_idx").cast(pl.Int64))
        .unique()
    )
    n_rel = rel.group_by("user_idx").len().sort("user_idx")
    users = n_rel["user_idx"].to_numpy()
    nrel = n_rel["len"].to_numpy().astype(np.float64)
    r = normalize_recs(recs, max_k)
    catalog = pl.DataFrame(
        {
            "metric": ["coverage"] * len(ks),
            "k": ks,
            "value": [r.filter(pl.col("pos") <= k)["item_idx"].n_unique() / n_items for k in ks],
        },
        schema=CATALOG_SCHEMA,
    )
    re = (
        r.filter(pl.col("user_idx").is_in(users.tolist()))
        .join(rel.with_columns(hit=pl.lit(True)), on=["user_idx", "item_idx"], how="left")
        .with_columns(pl.col("hit").fill_null(False))
    )
    present = dense_flags(users, re, None, max_k)
    hit = dense_flags(users, re, "hit", max_k)
    pos = np.arange(1, max_k + 1, dtype=np.float64)
    disc = 1.0 / np.log2(pos + 1.0)
    idcg = ideal_dcg(max_k)
    prec_at = np.cumsum(hit, axis=1) / pos  # P@r for every r
    ap_terms = np.where(hit, prec_at, 0.0)
    info = None
    if train is not None:
        info = dense_flags(users, _self_information(re, train), "info", max_k, dtype=np.float64)
    everyone = np.ones(len(users), dtype=bool)
    parts: list[tuple[str, int, np.ndarray, np.ndarray]] = []
    for k in ks:
        h = hit[:, :k]
        hits = h.sum(axis=1).astype(np.float64)
        denom = np.minimum(nrel, k)
        any_hit = hits > 0
        first = np.argmax(h, axis=1) + 1.0
        parts += [
            ("precision", k, hits / k, everyone),
            ("recall", k, hits / nrel, everyone),
            ("ndcg", k, (h * disc[:k]).sum(axis=1) / idcg[denom.astype(int)], everyone),
            ("map", k, ap_terms[:, :k].sum(axis=1) / denom, everyone),
            ("mrr", k, np.where(any_hit, 1.0 / first, 0.0), everyone),
            ("hit_rate", k, any_hit.astype(np.float64), everyone),
        ]
        if info is not None:
            length = present[:, :k].sum(axis=1)
            parts.append(("novelty", k, info[:, :k].sum(axis=1) / np.maximum(length, 1), length > 0))
    metrics = FULL_METRICS if train is not None else FULL_METRICS[:-1]
    return EvaluationResult(long_frame(users, parts), catalog, len(users), "full", metrics, tuple(ks))


def _self_information(rows: pl.DataFrame, train: pl.DataFrame) -> pl.DataFrame:
    """rows + `info` = −log2((n_i + 1)/(N + 1)) from training popularity (see module docstring)."""
    require_columns(train, ("user_idx", "item_idx"), "train")
    pairs = train.select(pl.col("user_idx").cast(pl.Int64), pl.col("item_idx").cast(pl.Int64)).unique()
    n_train_users = pairs["user_idx"].n_unique()
    pop = pairs.group_by("item_idx").agg(n=pl.len())
    return rows.join(pop, on="item_idx", how="left").with_columns(
        info=-((pl.col("n").fill_null(0) + 1) / (n_train_users + 1)).log(2)
    )


def cold_start_users(train: pl.DataFrame, max_interactions: int, all_users: pl.Series | None = None) -> pl.Series:
    """`user_idx` of users with fewer than `max_interactions` training ratings (any rating value).

    Users absent from `train` have zero ratings; they are included only if listed in `all_users`.
    """
    require_columns(train, ("user_idx",), "train")
    counts = train.group_by(pl.col("user_idx").cast(pl.Int64)).agg(n=pl.len())
    if all_users is not None:
        base = pl.DataFrame({"user_idx": all_users.cast(pl.Int64).unique()})
        counts = base.join(counts, on="user_idx", how="left").with_columns(pl.col("n").fill_null(0))
    return counts.filter(pl.col("n") < max_interactions).sort("user_idx")["user_idx"]
