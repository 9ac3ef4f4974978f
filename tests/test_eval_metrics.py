"""Full-protocol metrics: hand-computed cases, edge rules, and a cross-check against torchmetrics."""

import math

import numpy as np
import polars as pl
import pytest
import torch
from torchmetrics.retrieval import (
    RetrievalHitRate,
    RetrievalMAP,
    RetrievalMRR,
    RetrievalNormalizedDCG,
    RetrievalPrecision,
    RetrievalRecall,
)

from evaluation.metrics import cold_start_users, evaluate


def frame(rows, cols):
    return pl.DataFrame(rows, schema=cols, orient="row")


def recs_from(lists):
    """{user: [items in rank order]} -> recs frame with 1-based ranks."""
    return frame(
        [(u, i, r + 1) for u, items in lists.items() for r, i in enumerate(items)], ["user_idx", "item_idx", "rank"]
    )


def value(result, metric, k, user):
    got = result.per_user.filter((pl.col("metric") == metric) & (pl.col("k") == k) & (pl.col("user_idx") == user))
    return got["value"].item() if got.height else None


TEST = frame(
    [(1, 10, 5.0), (1, 20, 4.0), (1, 30, 4.0), (1, 40, 3.0), (2, 50, 5.0), (3, 60, 2.0)],
    ["user_idx", "item_idx", "rating"],
)


def test_hand_computed_user():
    res = evaluate(recs_from({1: [10, 99, 20, 40, 98], 3: [60]}), TEST, protocol="full", k=[1, 5], n_items=100)
    # user 1: relevant {10,20,30}; hits at ranks 1 and 3 of 5.
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert value(res, "precision", 5, 1) == pytest.approx(2 / 5)
    assert value(res, "recall", 5, 1) == pytest.approx(2 / 3)
    assert value(res, "ndcg", 5, 1) == pytest.approx((1 + 1 / math.log2(4)) / idcg3)
    assert value(res, "map", 5, 1) == pytest.approx((1 / 1 + 2 / 3) / 3)  # P@1 + P@3 over min(3, 5)
    assert value(res, "mrr", 5, 1) == 1.0 and value(res, "hit_rate", 5, 1) == 1.0
    # k = 1: one hit at rank 1; IDCG and MAP use min(|rel|, k) = 1.
    assert (value(res, "precision", 1, 1), value(res, "ndcg", 1, 1), value(res, "map", 1, 1)) == (1.0, 1.0, 1.0)
    assert value(res, "recall", 1, 1) == pytest.approx(1 / 3)
    # user 2 has a relevant item but no recommendations: evaluated, all zeros. User 3 has nothing relevant.
    for m in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate"):
        assert value(res, m, 5, 2) == 0.0
        assert value(res, m, 5, 3) is None
    assert res.n_users_evaluated == 2
    # coverage over every user's top-k: k=1 -> {10, 60}; k=5 -> {10,99,20,40,98,60}
    cov = dict(zip(res.catalog["k"], res.catalog["value"], strict=True))
    assert cov == {1: 2 / 100, 5: 6 / 100}


def test_late_and_short_lists():
    # first hit at rank 3 -> MRR 1/3; a 2-item list still divides precision by k.
    res = evaluate(recs_from({1: [7, 8, 30], 2: [50, 51]}), TEST, protocol="full", k=[5], n_items=100)
    assert value(res, "mrr", 5, 1) == pytest.approx(1 / 3)
    assert value(res, "precision", 5, 2) == pytest.approx(1 / 5)
    assert res.summary().filter(pl.col("metric") == "precision")["value"].item() == pytest.approx((1 / 5 + 1 / 5) / 2)


def test_rank_gaps_and_duplicates_are_renumbered():
    gapped = frame([(1, 99, 10), (1, 10, 3), (1, 10, 50), (1, 20, 70)], ["user_idx", "item_idx", "rank"])
    dense = recs_from({1: [10, 99, 20]})
    a = evaluate(gapped, TEST, protocol="full", k=[2, 3], n_items=100).per_user.sort("user_idx", "metric", "k")
    b = evaluate(dense, TEST, protocol="full", k=[2, 3], n_items=100).per_user.sort("user_idx", "metric", "k")
    assert a.equals(b)


def test_novelty_hand_computed():
    train = frame([(1, 10, 5.0), (2, 10, 1.0), (3, 10, 4.0), (1, 20, 3.0)], ["user_idx", "item_idx", "rating"])
    res = evaluate(recs_from({1: [10, 20, 77]}), TEST, protocol="full", k=[2, 3], train=train, n_items=100)
    # N = 3 train users; item 10 rated by 3 -> p = 4/4; item 20 by 1 -> 2/4; unseen 77 -> 1/4.
    assert value(res, "novelty", 2, 1) == pytest.approx((0 + 1) / 2)
    assert value(res, "novelty", 3, 1) == pytest.approx((0 + 1 + 2) / 3)
    assert value(res, "novelty", 3, 2) is None  # no list, no novelty
    assert (
        "novelty"
        not in evaluate(recs_from({1: [10]}), TEST, protocol="full", k=[1], n_items=9).per_user["metric"].to_list()
    )


def test_argument_errors():
    recs = recs_from({1: [10]})
    with pytest.raises(ValueError, match="n_items"):
        evaluate(recs, TEST, protocol="full", k=[5])
    for bad in ([], [0], [5, -1]):
        with pytest.raises(ValueError, match="k must"):
            evaluate(recs, TEST, protocol="full", k=bad, n_items=10)
    with pytest.raises(ValueError, match="protocol"):
        evaluate(recs, TEST, protocol="other", k=[5], n_items=10)


def test_cold_start_users():
    train = frame(
        [(1, 1, 5.0), (1, 2, 5.0), (1, 3, 1.0), (2, 1, 4.0), (3, 5, 2.0), (3, 6, 2.0)],
        ["user_idx", "item_idx", "rating"],
    )
    assert cold_start_users(train, 3).to_list() == [2, 3]
    assert cold_start_users(train, 2).to_list() == [2]
    assert cold_start_users(train, 2, all_users=pl.Series([1, 2, 3, 9])).to_list() == [2, 9]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torchmetrics(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, ks = 60, 40, [1, 3, 5, 10]
    scores = rng.uniform(0.01, 1.0, (n_users, n_items))
    relevant = rng.random((n_users, n_items)) < rng.uniform(0.02, 0.4, (n_users, 1))
    relevant[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # full evaluates users with ≥1
    order = np.argsort(-scores, axis=1)[:, : max(ks)]
    recs = pl.DataFrame(
        {
            "user_idx": np.repeat(np.arange(n_users), max(ks)),
            "item_idx": order.ravel(),
            "rank": np.tile(np.arange(1, max(ks) + 1), n_users),
        }
    )
    u, i = np.nonzero(relevant)
    nu, ni = np.nonzero(~relevant & (rng.random((n_users, n_items)) < 0.2))  # non-relevant ratings too
    test = pl.DataFrame(
        {
            "user_idx": np.r_[u, nu],
            "item_idx": np.r_[i, ni],
            "rating": np.r_[np.full(len(u), 4.0), np.full(len(nu), 3.5)],
        }
    )
    res = evaluate(recs, test, protocol="full", k=ks, n_items=n_items)
    assert res.n_users_evaluated == n_users
    preds, target = torch.tensor(scores.ravel()), torch.tensor(relevant.ravel())
    indexes = torch.arange(n_users).repeat_interleave(n_items)
    for k in ks:
        ours = {
            m: res.per_user.filter((pl.col("metric") == m) & (pl.col("k") == k)).sort("user_idx")["value"].to_numpy()
            for m in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")
        }
        for name, metric in [
            ("precision", RetrievalPrecision(top_k=k, adaptive_k=False)),
            ("recall", RetrievalRecall(top_k=k)),
            ("ndcg", RetrievalNormalizedDCG(top_k=k)),
            ("mrr", RetrievalMRR(top_k=k)),
            ("hit_rate", RetrievalHitRate(top_k=k)),
        ]:
            assert ours[name].mean() == pytest.approx(metric(preds, target, indexes=indexes).item(), abs=1e-6), name
        # torchmetrics' AP@k divides Σ P@r by the number of hits in the top k, ours by min(|rel|, k):
        # rescale ours to theirs (0 when no hit).
        hits = ours["precision"] * k
        n_rel = relevant.sum(axis=1)
        theirs_equiv = np.where(hits > 0, ours["map"] * np.minimum(n_rel, k) / np.maximum(hits, 1), 0.0)
        tm_map = RetrievalMAP(top_k=k)(preds, target, indexes=indexes).item()
        assert theirs_equiv.mean() == pytest.approx(tm_map, abs=1e-6)
        if k > 1:  # the two normalisations really differ on these inputs, so the rescale is exercised
            assert abs(ours["map"].mean() - tm_map) > 1e-4
