"""Aggregation over folds and seeds, user-level paired tests and Markdown tables."""

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import wilcoxon

from evaluation.aggregate import paired_tests, summarize
from evaluation.metrics import evaluate
from evaluation.tables import markdown_tables

COLS = ["model", "fold", "protocol", "segment", "user_idx", "metric", "k", "value", "seed"]


def rows(model, fold, values, metric="precision", k=5, protocol="full", segment="all", start=0, seed=0):
    return [(model, fold, protocol, segment, start + u, metric, k, float(v), seed) for u, v in enumerate(values)]


def per_user(rs, seeds=True):
    frame = pl.DataFrame(rs, schema=COLS, orient="row")
    return frame if seeds else frame.drop("seed")


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


def test_single_run_has_no_std_and_missing_fold_counts_as_zero():
    pu = per_user(rows("a", 1, [0.2, 0.4]) + rows("b", 1, [1.0]) + rows("b", 2, [0.5], metric="recall"), seeds=False)
    s = summarize(pu)
    a = get(s, model="a").row(0, named=True)
    assert (a["mean"], a["std"], a["n_folds"], a["n_runs"]) == (pytest.approx(0.3), None, 1, 1)
    # model b ran two folds; nobody qualified for precision in fold 2 -> that fold scores 0.0
    b = get(s, model="b", metric="precision").row(0, named=True)
    assert (b["mean"], b["n_folds"], b["n_users"]) == (pytest.approx(0.5), 2, 1)
    assert b["std"] == pytest.approx(math.sqrt(0.5))


def test_seeds_are_runs_of_their_own_and_users_count_per_fold():
    # Fold 1 under seeds 0 and 1, fold 2 under seed 0: three runs with means 0.5, 0.7, 0.1.
    pu = per_user(rows("a", 1, [0.4, 0.6]) + rows("a", 1, [0.6, 0.8], seed=1) + rows("a", 2, [0.1], start=5))
    r = summarize(pu).row(0, named=True)
    assert r["mean"] == pytest.approx(np.mean([0.5, 0.7, 0.1])) and r["std"] == pytest.approx(
        np.std([0.5, 0.7, 0.1], ddof=1)
    )
    assert (r["n_runs"], r["n_folds"], r["n_seeds"], r["n_users"]) == (3, 2, 2, 3)


def test_catalog_rows_are_summarized():
    pu = per_user(rows("a", 1, [1.0]) + rows("a", 2, [0.0]))
    cat = pl.DataFrame(
        [("a", 1, "full", "all", "coverage", 5, 0.2), ("a", 2, "full", "all", "coverage", 5, 0.4)],
        schema=["model", "fold", "protocol", "segment", "metric", "k", "value"],
        orient="row",
    )
    c = get(summarize(pu, cat), metric="coverage").row(0, named=True)
    assert c["mean"] == pytest.approx(0.3) and c["n_folds"] == 2 and c["n_users"] is None


def test_paired_tests_pair_user_means_against_scipy():
    rng = np.random.default_rng(0)
    ref_v, other_v = rng.random(30), rng.random(30)
    # Users 0-14 are tested in folds 1 and 2, users 15-29 in fold 2 only; "x" ran fold 2 under two seeds.
    pu = per_user(
        rows("ref", 1, ref_v[:15])
        + rows("ref", 2, ref_v)
        + rows("x", 1, other_v[:15])
        + rows("x", 2, other_v)
        + rows("x", 2, other_v + 0.2, seed=1)
        + rows("x", 3, [1, 1, 1])  # fold 3: no reference -> unpaired
        + rows("same", 1, ref_v[:15])
        + rows("lone", 1, [0.5], start=99)
    )
    t = paired_tests(pu, reference="ref")
    x = get(t, model="x").row(0, named=True)
    # Brute force: seed mean per (fold, user), difference per fold, mean over the folds both tested, per user.
    fold1 = other_v[:15] - ref_v[:15]
    fold2 = (other_v + other_v + 0.2) / 2 - ref_v
    user_diff = np.concatenate([(fold1 + fold2[:15]) / 2, fold2[15:]])
    assert x["n_users"] == 30
    assert x["p_value"] == pytest.approx(wilcoxon(user_diff).pvalue)
    assert x["mean_diff"] == pytest.approx(user_diff.mean())
    assert x["ci_low"] < x["mean_diff"] < x["ci_high"]
    same = get(t, model="same").row(0, named=True)
    assert (same["p_value"], same["mean_diff"], same["ci_low"], same["ci_high"]) == (1.0, 0.0, 0.0, 0.0)
    lone = get(t, model="lone").row(0, named=True)  # user 99 never scored by ref
    assert lone["n_users"] == 0 and math.isnan(lone["p_value"]) and math.isnan(lone["p_holm"])
    # Holm over the family {x, same} (lone has nothing to test): m = 2.
    assert x["p_holm"] == pytest.approx(min(1.0, 2 * x["p_value"]))
    assert paired_tests(pu, reference="missing").height == 0


def test_end_to_end_table():
    rng = np.random.default_rng(1)
    n_users, n_items = 40, 30
    test = pl.DataFrame(
        {
            "user_idx": np.repeat(np.arange(n_users), 6),
            "item_idx": np.concatenate([rng.choice(n_items, 6, replace=False) for _ in range(n_users)]),
            "rating": rng.integers(1, 6, n_users * 6).astype(float),
        }
    )
    frames, cats = [], []
    for model in ("good", "random"):
        for fold in (1, 2):
            if model == "good":  # recommends exactly the user's test items, best-rated first
                recs = test.sort("user_idx", "rating", descending=[False, True]).with_columns(
                    rank=pl.int_range(1, pl.len() + 1).over("user_idx")
                )
            else:
                recs = pl.DataFrame(
                    {
                        "user_idx": np.repeat(np.arange(n_users), 10),
                        "item_idx": np.concatenate([rng.choice(n_items, 10, replace=False) for _ in range(n_users)]),
                        "rank": np.tile(np.arange(1, 11), n_users),
                    }
                )
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
    assert any(line.startswith("| good |") and f"{good:.3f} ± 0.000" in line for line in lines)
    random_line = next(line for line in lines if line.startswith("| random |"))
    n_eval = 2 * test.filter(pl.col("rating") >= 4)["user_idx"].n_unique()  # users with a relevant item × folds
    assert "*" in random_line and f"| {n_eval} |" in random_line
    assert "precision@5" in md and "p < 0.05" in md and "Holm" in md
    one_fold = summarize(pu.filter(pl.col("fold") == 1), cat.filter(pl.col("fold") == 1))
    assert "±" not in "".join(
        line for line in markdown_tables(one_fold, None, k=[5], reference="good").splitlines() if line.startswith("| ")
    )


def test_cold_start_protocol_table_orders_n_numerically_and_marks_tested_differences():
    from evaluation.tables import cold_start_protocol_table, in_segment_order

    rng = np.random.default_rng(0)
    rs = []
    for fold in (1, 2):
        for segment in ("all", "cold-start-n10", "cold-start-n3"):
            ref = rng.uniform(0.2, 0.4, 40)
            rs += rows("ref", fold, ref, metric="ndcg", k=10, segment=segment)
            # `text` beats the reference for n = 3 users only
            rs += rows(
                "text", fold, ref + (0.3 if segment == "cold-start-n3" else 0.0), metric="ndcg", k=10, segment=segment
            )
    pu = per_user(rs)
    summary, tests = summarize(pu), paired_tests(pu, "ref")
    ordered = in_segment_order(summary)["segment"].unique(maintain_order=True).to_list()
    assert ordered == ["all", "cold-start-n3", "cold-start-n10"]
    table = cold_start_protocol_table(summary, tests, reference="ref", models=["ref", "text"])
    head, _, ref_row, text_row, pairs = table.splitlines()
    assert head.index("n = 3") < head.index("n = 10")
    assert "(ref.)" in ref_row and "▲" not in ref_row
    n3, n10 = [c.strip() for c in text_row.strip("|").split("|")][1:]
    assert n3.endswith("▲") and not n10.endswith(("▲", "▼"))
    assert pairs.split("|")[2].strip() == "80"  # 2 folds × 40 users
    assert (
        cold_start_protocol_table(summary.filter(pl.col("segment") == "all"), tests, reference="ref", models=["ref"])
        == ""
    )
