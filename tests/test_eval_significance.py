"""User-level paired tests, Holm's correction and bootstrap CIs on synthetic data with a known truth, and the choice
of the reference method."""

import itertools
import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import binom, wilcoxon

from evaluation.aggregate import UNPAIRED_NOTE, bootstrap_mean_ci, holm_adjust, paired_tests
from evaluation.reference import choose_reference, is_baseline

FOLDS = 3


def correlated_frame(
    n_users: int, effect: float, families: int, rng: np.random.Generator, user_sd: float = 0.1, noise_sd: float = 0.1
) -> pl.DataFrame:
    """Per-user values of `ref` and `x` in `FOLDS` folds, every user in every fold. `x − ref` = `effect` + a
    per-user effect shared by all of a user's folds (sd `user_sd`, mean 0) + fold noise: (fold, user) pairs of one
    user are correlated, users are independent. Each family (a separate `k`) is an independent draw."""
    shape = (families, n_users)
    base = rng.uniform(0.2, 0.6, shape)
    user_effect = rng.normal(0.0, user_sd, shape)
    parts = []
    for fold in range(1, FOLDS + 1):
        ref = base + rng.normal(0.0, noise_sd, shape)
        x = base + effect + user_effect + rng.normal(0.0, noise_sd, shape)
        for model, values in (("ref", ref), ("x", x)):
            parts.append(
                pl.DataFrame(
                    {
                        "model": model,
                        "fold": fold,
                        "protocol": "full",
                        "segment": "all",
                        "metric": "ndcg",
                        "k": np.repeat(np.arange(families), n_users),
                        "user_idx": np.tile(np.arange(n_users), families),
                        "value": values.ravel(),
                    }
                )
            )
    return pl.concat(parts)


def test_known_effect_is_detected_and_no_effect_is_not():
    rng = np.random.default_rng(7)
    effect = paired_tests(correlated_frame(300, 0.05, 1, rng), "ref").row(0, named=True)
    assert effect["p_holm"] < 1e-4 and effect["ci_low"] > 0
    null = paired_tests(correlated_frame(300, 0.0, 1, rng), "ref").row(0, named=True)
    assert null["p_holm"] > 0.05 and null["ci_low"] < 0 < null["ci_high"]


def test_false_positive_rate_on_null_data_is_near_alpha_where_fold_pairs_are_not():
    """400 independent null draws of correlated folds: the user-level test rejects ~5 %; treating (fold, user)
    pairs as independent (the test this replaces) rejects far more often."""
    draws, n_users = 400, 60
    frame = correlated_frame(n_users, 0.0, draws, np.random.default_rng(11))
    tests = paired_tests(frame, "ref", n_bootstrap=200)
    assert tests.height == draws and (tests["n_users"] == n_users).all()
    rejected = int((tests["p_value"] < 0.05).sum())
    # Two-sided binomial band holding 99.9 % of the mass under a true 5 % rate.
    low, high = binom.ppf(0.0005, draws, 0.05), binom.ppf(0.9995, draws, 0.05)
    assert low <= rejected <= high, rejected

    wide = frame.pivot(on="model", index=["k", "fold", "user_idx"], values="value").sort("k", "fold", "user_idx")
    diffs = (wide["x"] - wide["ref"]).to_numpy().reshape(draws, FOLDS * n_users)
    naive = sum(wilcoxon(d).pvalue < 0.05 for d in diffs)
    assert naive > high, naive


def test_bootstrap_ci_covers_the_true_mean_difference():
    rng = np.random.default_rng(3)
    draws, true_diff = 300, 0.02
    samples = [true_diff + rng.exponential(0.1, 80) - 0.1 for _ in range(draws)]  # skewed, mean true_diff
    cis = bootstrap_mean_ci(samples, n_bootstrap=1000, seed=5)
    covered = sum(low <= true_diff <= high for low, high in cis)
    # Percentile intervals on 80 skewed values cover a little under 95 %; far below means a broken interval.
    assert binom.ppf(0.0005, draws, 0.93) <= covered <= binom.ppf(0.9995, draws, 0.95)
    # A CI depends on its own sample and the seed only, not on which other comparisons ran beside it.
    assert bootstrap_mean_ci([samples[1]], n_bootstrap=1000, seed=5)[0] == pytest.approx(cis[1], rel=1e-12)
    assert bootstrap_mean_ci([np.array([1.0])])[0] == (None, None)


def test_a_user_tested_in_several_folds_counts_once():
    # User 0 is tested in three folds with difference +1 each; users 1 and 2 in one fold each with −1.
    rows = [("ref", f, 0, 0.0) for f in (1, 2, 3)] + [("x", f, 0, 1.0) for f in (1, 2, 3)]
    rows += [("ref", 1, 1, 1.0), ("x", 1, 1, 0.0), ("ref", 2, 2, 1.0), ("x", 2, 2, 0.0)]
    frame = pl.DataFrame(rows, schema=["model", "fold", "user_idx", "value"], orient="row").with_columns(
        protocol=pl.lit("full"), segment=pl.lit("all"), metric=pl.lit("ndcg"), k=pl.lit(10)
    )
    t = paired_tests(frame, "ref").row(0, named=True)
    assert t["n_users"] == 3 and t["mean_diff"] == pytest.approx(-1 / 3)  # not (3 − 2) / 5 over (fold, user) pairs


def test_paper_protocol_map_and_mrr_are_not_tested():
    rng = np.random.default_rng(1)
    frames = []
    for protocol in ("full", "paper"):
        for metric in ("map", "mrr", "ndcg"):
            f = correlated_frame(50, 0.1, 1, rng)
            frames.append(f.with_columns(protocol=pl.lit(protocol), metric=pl.lit(metric)))
    t = paired_tests(pl.concat(frames), "ref")
    paper = t.filter((pl.col("protocol") == "paper") & pl.col("metric").is_in(["map", "mrr"]))
    assert paper.height == 2 and (paper["note"] == UNPAIRED_NOTE).all()
    assert paper["p_value"].is_nan().all() and paper["mean_diff"].is_nan().all() and paper["p_holm"].is_nan().all()
    tested = t.filter(pl.col("note").is_null())
    assert tested.height == 4 and (tested["p_holm"] < 0.01).all()


def holm_by_closed_testing(p: list[float]) -> list[float]:
    """Holm = closed testing with Bonferroni local tests: adjusted p_i = max over every index set S containing i
    of min(1, |S| · min_{j ∈ S} p_j)."""
    m = len(p)
    subsets = [s for r in range(1, m + 1) for s in itertools.combinations(range(m), r)]
    return [max(min(1.0, len(s) * min(p[j] for j in s)) for s in subsets if i in s) for i in range(m)]


def test_holm_matches_closed_testing_and_step_down_rejections():
    rng = np.random.default_rng(0)
    for trial in range(200):
        m = int(rng.integers(1, 8))
        p = rng.choice([0.001, 0.01, 0.02, 0.04], m).tolist() if trial % 4 == 0 else rng.random(m).tolist()
        p = [x**3 for x in p] if trial % 3 == 0 else p  # many small p-values too
        adjusted = holm_adjust(np.array(p)).to_numpy()
        np.testing.assert_allclose(adjusted, holm_by_closed_testing(p), rtol=1e-12)
        # Step-down at α = 0.05: reject H_(1..i) while p_(i) ≤ α / (m − i + 1).
        rejected = set()
        for i, j in enumerate(np.argsort(p, kind="stable")):
            if p[j] > 0.05 / (m - i):
                break
            rejected.add(int(j))
        assert rejected == set(np.flatnonzero(adjusted <= 0.05).tolist())


def test_holm_ignores_untested_and_adjusts_within_each_family():
    adjusted = holm_adjust(np.array([0.01, np.nan, 0.04])).to_numpy()
    assert math.isnan(adjusted[1]) and adjusted[[0, 2]] == pytest.approx([0.02, 0.04])
    rng = np.random.default_rng(2)
    frames = [
        correlated_frame(40, 0.0, 1, rng).with_columns(model=pl.col("model").replace("x", name), k=pl.lit(k))
        for k in (5, 10)
        for name in ("x", "y", "z")
    ]
    frame = pl.concat(frames).unique(["model", "fold", "user_idx", "k"], keep="first")  # one `ref` per family
    t = paired_tests(frame, "ref")
    for k in (5, 10):
        family = t.filter(pl.col("k") == k).sort("model")
        expected = holm_by_closed_testing(family["p_value"].to_list())
        assert family["p_holm"].to_list() == pytest.approx(expected)


def logs_frame(rows):
    return pl.DataFrame(rows, schema=["model", "fold", "best_validation_ndcg10"], orient="row")


def test_auto_reference_is_the_best_baseline_on_validation_not_on_test():
    methods = ["popularity", "bpr-mf", "als", "gat-id", "gat", "gat/no-cosine", "gat+relevancy"]
    # als wins on validation (mean 0.24 over folds), bpr-mf on test; the GAT family scores higher still but is
    # not a baseline; popularity has no validation score.
    logs = logs_frame(
        [
            ("bpr-mf", 1, 0.20),
            ("bpr-mf", 2, 0.22),
            ("als", 1, 0.25),
            ("als", 2, 0.23),
            ("gat", 1, 0.30),
            ("gat-id", 1, 0.29),
            ("gat/no-cosine", 1, 0.31),
            ("popularity", 1, float("nan")),
        ]
    )
    test_ndcg = {"popularity": 0.10, "bpr-mf": 0.40, "als": 0.35}
    reference, why = choose_reference("auto", methods, logs)
    assert reference == "als" != max(test_ndcg, key=test_ndcg.get)
    assert "validation" in why and "0.2400" in why
    assert [m for m in methods if is_baseline(m)] == ["popularity", "bpr-mf", "als"]
    assert choose_reference("bpr-mf", methods, logs) == ("bpr-mf", "set by evaluation.reference")
    # Without any validation score, the first baseline; without baselines, the best of the rest on validation.
    assert choose_reference("auto", ["popularity", "gat"], logs_frame([]))[0] == "popularity"
    assert choose_reference("auto", ["popularity", "gat"], logs)[0] == "popularity"
    assert choose_reference("auto", ["gat", "gat-id", "gat+x"], logs)[0] == "gat"


def test_the_tests_do_not_depend_on_the_row_order_of_their_input():
    # The same per-user values in another row order (as folds and models finish in another order) give the
    # same differences and p-values to the last bit: every mean sums its values in one fixed order.
    frame = correlated_frame(2000, 0.01, 4, np.random.default_rng(3))
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=5)
    columns = ["mean_diff", "ci_low", "ci_high", "p_value", "p_holm"]
    first, again = paired_tests(frame, "ref"), paired_tests(shuffled, "ref")
    assert first.select(columns).to_numpy().tobytes() == again.select(columns).to_numpy().tobytes()
