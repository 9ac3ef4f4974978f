"""Fold aggregation, paired Wilcoxon tests and Markdown tables."""

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import wilcoxon

from evaluation.aggregate import paired_tests, summarize
from evaluation.metrics import evaluate
from evaluation.tables import markdown_tables

COLS = ["model", "fold", "protocol", "segment", "user_idx", "metric", "k", "value"]


def rows(model, fold, values, metric="precision", k=5, protocol="full", segment="all", start=0):
    return [(model, fold, protocol, segment, start + u, metric, k, float(v)) for u, v in enumerate(values)]


def per_user(rs):
    return pl.DataFrame(rs, schema=COLS, orient="row")


def get(df, **kw):
    f = df
    for c, v in kw.items():
        f = f.filter(pl.col(c) == v)
    return f


def test_summarize_fold_means_and_std():
    pu = per_user(rows("a", 1, [1, 0, 0, 1]) + rows("a", 2, [1, 1]) + rows("a", 3, [0, 0, 0]))
    s = summarize(pu)
    r = get(s, model="a").row(0, named=True)
    # fold means 0.5, 1.0, 0.0 -> mean 0.5, sample std sqrt(((0)^2 + 0.5^2 + 0.5^2) / 2) = 0.5
    assert r["mean"] == pytest.approx(0.5) and r["std"] == pytest.approx(0.5)
    assert (r["n_folds"], r["n_users"]) == (3, 9)


def test_single_fold_std_zero_and_missing_fold_counts_as_zero():
    pu = per_user(rows("a", 1, [0.2, 0.4]) + rows("b", 1, [1.0]) + rows("b", 2, [0.5], metric="recall"))
    s = summarize(pu)
    a = get(s, model="a").row(0, named=True)
    assert (a["mean"], a["std"], a["n_folds"]) == (pytest.approx(0.3), 0.0, 1)
    # model b ran two folds; nobody qualified for precision in fold 2 -> that fold scores 0.0
    b = get(s, model="b", metric="precision").row(0, named=True)
    assert (b["mean"], b["n_folds"], b["n_users"]) == (pytest.approx(0.5), 2, 1)
    assert b["std"] == pytest.approx(math.sqrt(0.5))


def test_catalog_rows_are_summarized():
    pu = per_user(rows("a", 1, [1.0]) + rows("a", 2, [0.0]))
    cat = pl.DataFrame([("a", 1, "full", "all", "coverage", 5, 0.2), ("a", 2, "full", "all", "coverage", 5, 0.4)],
                       schema=["model", "fold", "protocol", "segment", "metric", "k", "value"], orient="row")
    c = get(summarize(pu, cat), metric="coverage").row(0, named=True)
    assert c["mean"] == pytest.approx(0.3) and c["n_folds"] == 2 and c["n_users"] is None


def test_paired_tests_against_scipy():
    rng = np.random.default_rng(0)
    ref_v, other_v = rng.random(30), rng.random(30)
    pu = per_user(rows("ref", 1, ref_v[:15]) + rows("ref", 2, ref_v[15:]) + rows("x", 1, other_v[:15])
                  + rows("x", 2, other_v[15:]) + rows("x", 3, [1, 1, 1])  # fold 3: no reference -> unpaired
                  + rows("same", 1, ref_v[:15]) + rows("lone", 1, [0.5], start=99))
    t = paired_tests(pu, reference="ref")
    x = get(t, model="x").row(0, named=True)
    assert x["n_pairs"] == 30
    assert x["p_value"] == pytest.approx(wilcoxon(other_v - ref_v).pvalue)
    assert x["mean_diff"] == pytest.approx((other_v - ref_v).mean())
    assert get(t, model="same")["p_value"].item() == 1.0
    lone = get(t, model="lone").row(0, named=True)  # user 99 never scored by ref
    assert lone["n_pairs"] == 0 and math.isnan(lone["p_value"])
    assert paired_tests(pu, reference="missing").height == 0


def test_end_to_end_table():
    rng = np.random.default_rng(1)
    n_users, n_items = 40, 30
    test = pl.DataFrame({"user_idx": np.repeat(np.arange(n_users), 6),
                         "item_idx": np.concatenate([rng.choice(n_items, 6, replace=False) for _ in range(n_users)]),
                         "rating": rng.integers(1, 6, n_users * 6).astype(float)})
    frames, cats = [], []
    for model in ("good", "random"):
        for fold in (1, 2):
            if model == "good":  # recommends exactly the user's test items, best-rated first
                recs = test.sort("user_idx", "rating", descending=[False, True]).with_columns(
                    rank=pl.int_range(1, pl.len() + 1).over("user_idx"))
            else:
                recs = pl.DataFrame({"user_idx": np.repeat(np.arange(n_users), 10), "item_idx": np.concatenate(
                    [rng.choice(n_items, 10, replace=False) for _ in range(n_users)]),
                    "rank": np.tile(np.arange(1, 11), n_users)})
            res = evaluate(recs, test, protocol="full", k=[5], n_items=n_items)
            extra = dict(model=model, fold=fold, protocol="full", segment="all")
            frames.append(res.per_user.with_columns(**{c: pl.lit(v) for c, v in extra.items()}))
            cats.append(res.catalog.with_columns(**{c: pl.lit(v) for c, v in extra.items()}))
    pu, cat = pl.concat(frames), pl.concat(cats)
    s, t = summarize(pu, cat), paired_tests(pu, reference="good")
    assert get(t, model="random", metric="ndcg")["p_value"].item() < 0.05
    md = markdown_tables(s, t, k=[5], reference="good", models=["good", "random"])
    good = get(s, model="good", metric="precision")["mean"].item()
    lines = md.splitlines()
    assert any(l.startswith("| good |") and f"{good:.3f} ± 0.000" in l for l in lines)
    random_line = next(l for l in lines if l.startswith("| random |"))
    n_eval = 2 * test.filter(pl.col("rating") >= 4)["user_idx"].n_unique()  # users with a relevant item × folds
    assert "*" in random_line and f"| {n_eval} |" in random_line
    assert "precision@5" in md and "p < 0.05" in md
