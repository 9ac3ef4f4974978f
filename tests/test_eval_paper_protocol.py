"""Paper protocol: an independent per-user reference (plain Python) vs the vectorised implementation."""

import math

import numpy as np
import polars as pl
import pytest

from evaluation.metrics import evaluate

METRICS = ("precision", "recall", "ndcg", "map", "mrr")


def reference(recs, test, k, threshold):
    """The seed authors' rules, written literally. Returns ({metric: {user: value}}, coverage, {metric: mean})."""
    test_items, relevant = {}, {}
    for u, i, r in test.select("user_idx", "item_idx", "rating").iter_rows():
        test_items.setdefault(u, set()).add(i)
        if r >= threshold:
            relevant.setdefault(u, set()).add(i)
    lists = {}
    for u, i, rank in recs.select("user_idx", "item_idx", "rank").iter_rows():
        lists.setdefault(u, []).append((rank, i))
    per_user = {m: {} for m in METRICS}
    covered = set()
    for u in sorted(set(lists) & set(test_items)):
        top = [i for rank, i in sorted(lists[u]) if rank <= k]
        F = [i for i in top if i in test_items[u]]
        R = relevant.get(u, set())
        covered.update(F)
        hits = [i in R for i in F]
        if F:
            per_user["precision"][u] = sum(hits) / len(F)
        if R:
            per_user["recall"][u] = sum(hits) / len(R)
        if F and R:
            dcg = sum(1 / math.log2(p + 1) for p, h in enumerate(hits, start=1) if h)
            idcg = sum(1 / math.log2(i + 1) for i in range(1, min(len(R), k) + 1))
            per_user["ndcg"][u] = dcg / idcg
        if any(hits):
            first = hits.index(True) + 1
            per_user["mrr"][u] = 1 / first
            ap, j = 0.0, 0
            for p, h in enumerate(hits, start=1):
                if h:
                    j += 1
                    ap += j / p
            per_user["map"][u] = ap / len(R)
    all_items = set(test["item_idx"].to_list())
    coverage = len(covered) / len(all_items)
    means = {m: (sum(v.values()) / len(v) if v else 0.0) for m, v in per_user.items()}
    return per_user, coverage, means


def random_case(rng):
    n_users, n_items = int(rng.integers(1, 30)), int(rng.integers(3, 40))
    test_rows, rec_rows = [], []
    for u in range(n_users):
        if rng.random() < 0.85:  # some users only in recs
            for i in rng.choice(n_items, int(rng.integers(1, n_items + 1)), replace=False):
                test_rows.append((u, int(i), float(rng.integers(1, 6))))
        if rng.random() < 0.85:  # some users only in test
            length = int(rng.integers(1, 25))
            items = rng.choice(n_items + 5, min(length, n_items + 5), replace=False)  # +5 never in test
            for rank in rng.permutation(len(items)):
                rec_rows.append((u, int(items[rank]), int(rank) + 1))
    if not test_rows:
        test_rows.append((0, 0, 5.0))
    test = pl.DataFrame(test_rows, schema=["user_idx", "item_idx", "rating"], orient="row")
    recs = pl.DataFrame(rec_rows, schema={"user_idx": pl.Int64, "item_idx": pl.Int64, "rank": pl.Int64}, orient="row")
    return recs, test


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_equals_reference(seed):
    rng = np.random.default_rng(seed)
    recs, test = random_case(rng)
    ks = sorted({int(x) for x in rng.integers(1, 30, 3)})
    threshold = float(rng.choice([3.0, 4.0, 4.5]))
    res = evaluate(recs, test, protocol="paper", k=ks, relevance_threshold=threshold)
    summary = res.summary()
    for k in ks:
        per_user, coverage, means = reference(recs, test, k, threshold)
        for m in METRICS:
            got = res.per_user.filter((pl.col("metric") == m) & (pl.col("k") == k))
            got = dict(zip(got["user_idx"].to_list(), got["value"].to_list(), strict=True))
            assert got.keys() == per_user[m].keys(), (m, k)
            for u, v in per_user[m].items():
                assert abs(got[u] - v) <= 1e-12, (m, k, u)
            agg = summary.filter((pl.col("metric") == m) & (pl.col("k") == k))["value"].item()
            assert abs(agg - means[m]) <= 1e-12
        cov = res.catalog.filter(pl.col("k") == k)["value"].item()
        assert abs(cov - coverage) <= 1e-12


def test_hand_computed():
    test = pl.DataFrame(
        [(1, 10, 5.0), (1, 20, 4.0), (1, 40, 3.0), (1, 30, 4.0), (2, 60, 2.0), (3, 70, 5.0), (4, 80, 5.0)],
        schema=["user_idx", "item_idx", "rating"],
        orient="row",
    )
    lists = {1: [10, 99, 40, 20, 98, 30], 2: [61, 60], 3: [71, 72], 5: [10]}
    recs = pl.DataFrame(
        [(u, i, r + 1) for u, items in lists.items() for r, i in enumerate(items)],
        schema=["user_idx", "item_idx", "rank"],
        orient="row",
    )
    res = evaluate(recs, test, protocol="paper", k=[5])
    s = dict(zip(res.summary()["metric"], res.summary()["value"], strict=True))
    # Evaluated: users 1, 2, 3 (4 has no recs, 5 no test).
    # u1: F = [10, 40, 20] (30 is at rank 6), hits at F-positions 1 and 3, |R| = 3.
    # u2: F = [60], R empty -> precision 0, skipped elsewhere. u3: F empty, R = {70} -> recall 0 only.
    assert res.n_users_evaluated == 3
    assert s["precision"] == pytest.approx((2 / 3 + 0) / 2)
    assert s["recall"] == pytest.approx((2 / 3 + 0) / 2)
    assert s["ndcg"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4)))
    assert s["map"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert s["mrr"] == 1.0
    assert s["coverage"] == pytest.approx(4 / 7)  # {10,40,20,60} of 7 distinct test items
    # The same lists under full: u1 P@5 = 2/5 (hits 10, 20 of k=5), far below the paper's 2/3.
    full = evaluate(recs, test, protocol="full", k=[5], n_items=100)
    p1 = full.per_user.filter((pl.col("metric") == "precision") & (pl.col("user_idx") == 1))["value"].item()
    assert p1 == pytest.approx(2 / 5)


def test_no_qualifying_user_gives_zero():
    test = pl.DataFrame({"user_idx": [1], "item_idx": [5], "rating": [1.0]})
    recs = pl.DataFrame({"user_idx": [1], "item_idx": [6], "rank": [1]})
    s = evaluate(recs, test, protocol="paper", k=[3]).summary()
    assert s.filter(pl.col("metric") != "coverage")["value"].to_list() == [0.0] * 5
    # F empty (item 6 unrated) and R empty (rating 1): every metric skips the only user.
    assert s.filter(pl.col("metric") != "coverage")["n_users"].to_list() == [0] * 5
