"""`rerank.max_users`: one seeded user sample for every strategy and fold, and metrics over exactly those users
(the reranked methods and the base model on the same users); the report's LLM estimate-vs-actual table."""

import numpy as np
import polars as pl

from data import Fold, save_fold
from data.config import RelevanceConfig
from e2ep.store import write_parquet
from evaluation.config import EvaluationConfig
from evaluation.llm_cost import estimate_vs_actual
from rerank.config import RerankConfig
from rerank.judges import SemanticJudge
from rerank.run import rerank_recommendations, rerank_sample
from tasks.data import DatasetRef, FoldRef
from tasks.evaluate import evaluate_trained
from tasks.train import TrainedRef
from tests.rerank_fakes import base_recs, make_inputs

N_USERS, N_ITEMS = 16, 40


def fold_ref(tmp_path, number: int) -> FoldRef:
    """Every user has relevant test items (so every user would count in an unrestricted evaluation)."""
    rng = np.random.default_rng(number)
    rows = [
        (u, int(i), float(rng.integers(1, 6)), t)
        for u in range(N_USERS)
        for t, i in enumerate(rng.choice(N_ITEMS, 12, replace=False))
    ]
    frame = pl.DataFrame(
        rows,
        schema={"user_idx": pl.Int32, "item_idx": pl.Int32, "rating": pl.Float32, "timestamp": pl.Int64},
        orient="row",
    )
    test = frame.filter(pl.col("timestamp") < 4).with_columns(rating=pl.lit(5.0, pl.Float32))
    train = frame.filter(pl.col("timestamp") >= 4).with_columns(is_validation=pl.lit(False))
    save_fold(Fold(number, train, test), tmp_path / f"fold{number}")
    return FoldRef(number=number, directory=str(tmp_path / f"fold{number}"), digest=f"f{number}")


def test_one_sample_for_every_strategy_and_fold_and_metrics_on_exactly_it(tmp_path):
    inputs = make_inputs(n_users=N_USERS, n_items=N_ITEMS)
    cfg = RerankConfig(base_model="base", max_users=5, seed=3, pool_size=10)
    sample = rerank_sample(cfg, N_USERS)
    dataset = DatasetRef(name="x", directory=str(tmp_path), digest="d", n_users=N_USERS, n_items=N_ITEMS)
    evaluation, relevance = EvaluationConfig(protocols=["full"]), RelevanceConfig()
    for number in (1, 2):
        fold = fold_ref(tmp_path, number)
        recs = base_recs(n_users=N_USERS, n_items=N_ITEMS, seed=number)
        base = TrainedRef(
            model="base", fold=number, log={}, recommendations=write_parquet(recs, tmp_path / f"base{number}.parquet")
        )
        scored = {"base": evaluate_trained(base, fold, dataset, evaluation, relevance)}
        scored["base@sample"] = evaluate_trained(
            base.model_copy(update={"model": "base@sample"}), fold, dataset, evaluation, relevance, users=sample
        )
        for strategy in ("prompt", "relevancy"):
            out = rerank_recommendations(recs, strategy, SemanticJudge(inputs), inputs, cfg).recommendations
            assert sorted(set(out["user_idx"])) == sample, (number, strategy)
            ref = TrainedRef(
                model=f"base+{strategy}",
                fold=number,
                log={},
                recommendations=write_parquet(out, tmp_path / f"{strategy}{number}.parquet"),
            )
            scored[strategy] = evaluate_trained(ref, fold, dataset, evaluation, relevance, users=sample)
        users = {
            name: set(ref.per_user.read_parquet().filter(pl.col("segment") == "all")["user_idx"])
            for name, ref in scored.items()
        }
        assert users["base"] == set(range(N_USERS))
        assert users["base@sample"] == users["prompt"] == users["relevancy"] == set(sample)


def test_estimate_vs_actual_sums_folds_per_stage():
    estimate = {
        "model": "openai/gpt-4o-mini",
        "stages": [
            {"stage": "item_profiles", "calls": 10, "upper_bound": None, "cached_calls": 2, "cost_usd": 0.01},
            {"stage": "user_profiles fold 1", "calls": 30, "upper_bound": None, "cached_calls": 0, "cost_usd": 0.02},
            {"stage": "user_profiles fold 2", "calls": 32, "upper_bound": None, "cached_calls": 0, "cost_usd": 0.02},
            {"stage": "rerank_bst fold 1", "calls": 63, "upper_bound": 70, "cached_calls": 0, "cost_usd": 0.05},
            {"stage": "rerank_bst fold 2", "calls": 63, "upper_bound": 70, "cached_calls": 0, "cost_usd": 0.05},
        ],
    }
    semantic = {
        "profiles": {
            "items": {"llm_usage": {"total": {"calls": 11, "cache_hits": 2, "cost_usd": 0.009}}},
            "users-fold1": {"llm_usage": {"total": {"calls": 30, "cache_hits": 0, "cost_usd": 0.02}}},
            "users-fold2": {"llm_usage": {"total": {"calls": 31, "cache_hits": 1, "cost_usd": 0.02}}},
        }
    }
    cost = pl.DataFrame(
        {
            "model": ["gat+bst", "gat+bst"],
            "fold": [1, 2],
            "judge": ["llm", "llm"],
            "calls": [60, 62],
            "cache_hits": [0, 0],
            "cost_usd": [0.04, 0.05],
        }
    )
    table = estimate_vs_actual(estimate, semantic, cost)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "| 2 | 62 |  | 0 | 0.0400 | 61 | 1 | 0.0400 | 0.984 |" in rows["user_profiles"]
    assert "| 2 | 126 | 140 | 0 | 0.1000 | 122 | 0 | 0.0900 | 0.968 |" in rows["rerank_bst"]
    assert "| 1 | 10 |  | 2 | 0.0100 | 11 | 2 | 0.0090 | 1.100 |" in rows["item_profiles"]
