"""Reranking inside the experiment flow on a tiny planted dataset: every strategy is evaluated beside its base model,
and the run folder gets explanations, costs and the Reranking section."""

import json
from pathlib import Path

import polars as pl
import pytest

from flows.config import load_config
from tests.synthetic import write_planted_csv


def test_flow_reranks_evaluates_and_reports(tmp_path):
    from flows.experiment import experiment

    ratings = write_planted_csv(tmp_path)
    cfg = load_config(
        None,
        {
            "dataset.name": "csv",
            "dataset.ratings_path": str(ratings),
            "split.n_folds": 3,
            "split.folds": [1],
            "models.names": ["bpr-mf"],
            "models.training.max_epochs": 10,
            "evaluation.n_recommendations": 20,
            "rerank.base_model": "bpr-mf",
            "rerank.pool_size": 8,
            "artifacts_dir": str(tmp_path / "artifacts"),
            "run_name": "rr",
        },
    )
    headline = experiment(cfg)
    run_dir = Path(cfg.artifacts_dir) / "rr"
    summary = (run_dir / "summary.md").read_text()
    methods = ["bpr-mf+prompt", "bpr-mf+bst", "bpr-mf+batch", "bpr-mf+relevancy"]

    recs = pl.read_parquet(run_dir / "recommendations.parquet")
    assert set(recs["model"]) == {"bpr-mf", *methods}
    lengths = recs.group_by("model", "user_id").agg(pl.len(), pl.col("item_id").n_unique().alias("distinct"))
    assert (lengths["len"] == 20).all() and (lengths["distinct"] == 20).all()
    metrics = pl.read_parquet(run_dir / "metrics_per_user.parquet")
    assert set(metrics["model"]) == {"bpr-mf", *methods} and set(metrics["segment"]) == {"all", "cold-start"}

    notes = pl.read_parquet(run_dir / "explanations.parquet")
    assert notes.columns == ["model", "fold", "user_id", "item_id", "rank", "explanation"]
    assert set(notes["model"]) == set(methods)
    assert (notes.group_by("model", "user_id").len()["len"] == 8).all()
    # An explanation is stored beside the recommendation it explains.
    assert notes.join(recs, on=["model", "fold", "user_id", "item_id", "rank"]).height == notes.height

    cost = pl.read_parquet(run_dir / "rerank_cost.parquet")
    assert set(cost["model"]) == set(methods)
    for column in (
        "fold",
        "users",
        "calls",
        "prompt_tokens",
        "completion_tokens",
        "cache_hits",
        "repairs",
        "fallbacks",
    ):
        assert column in cost.columns, column
    assert (cost["calls"] == 0).all() and set(cost["judge"]) == {"semantic"}
    # The fusion was chosen on validation users (whose judge requests are counted apart) from the grid.
    assert (cost["fusion"] == "validation").all() and (cost["validation_users"] > 0).all()
    assert (cost["validation_requests"] >= cost["validation_users"]).all()
    assert set(cost["judge_weight"]) <= set(cfg.rerank.fusion_grid)
    judged = cost.filter(pl.col("judge_weight") > 0)
    assert (judged["requests"] >= judged["users"]).all()
    # A zero judge weight keeps the base model's lists exactly.
    for method in cost.filter(pl.col("judge_weight") == 0)["model"]:
        same = recs.filter(pl.col("model") == method).drop("model", "score").sort("user_id", "rank")
        assert same.equals(recs.filter(pl.col("model") == "bpr-mf").drop("model", "score").sort("user_id", "rank"))
    assert "### Fusion per fold" in summary and "w = " in summary

    assert "## Reranking" in summary and "cold-start users" in summary and "judge requests / user" in summary
    assert all(m in summary for m in methods) and all(f"| {m} " in headline for m in methods)
    assert "## Reranking" not in headline  # the console shows one table; the rest is in the run folder


def test_rerank_needs_its_base_model_and_the_semantic_layer():
    with pytest.raises(ValueError, match="rerank base model\\(s\\) 'lightgcn' not among models.names"):
        load_config(None, {"models.names": ["bpr-mf"], "rerank.base_model": "lightgcn"})
    with pytest.raises(ValueError, match="'gat' not among models.names"):
        load_config(None, {"models.names": ["bpr-mf"], "rerank.base_models": ["bpr-mf", "gat"]})
    with pytest.raises(ValueError, match="needs the semantic layer"):
        load_config(None, {"models.names": ["bpr-mf"], "rerank.base_model": "bpr-mf", "semantic": False})
    # By default the base is chosen on validation among the models run; without the semantic layer the implied
    # reranking is skipped, not refused.
    default = load_config(None, {"models.names": ["bpr-mf"]})
    assert default.rerank.base_models is None and default.rerank.strategies
    assert load_config(None, {"models.names": ["bpr-mf"], "semantic": False}).rerank.strategies == []
    # `base_model` is shorthand for a one-element `base_models`.
    assert load_config(None, {"models.names": ["bpr-mf"], "rerank.base_model": "bpr-mf"}).rerank.base_models == [
        "bpr-mf"
    ]


def test_an_llm_judge_without_a_model_is_refused_before_any_work(monkeypatch):
    from e2ep.errors import ConfigError
    from flows.config import resolve_auto
    from tasks.semantic import preflight_llm

    monkeypatch.delenv("E2EP_LLM_MODEL", raising=False)
    cfg = load_config(None, {"models.names": ["bpr-mf"], "rerank.base_model": "bpr-mf", "rerank.judge": "llm"})
    with pytest.raises(ConfigError, match="no LLM configured"):
        preflight_llm(resolve_auto(cfg))
    preflight_llm(resolve_auto(cfg.model_copy(update={"rerank": cfg.rerank.model_copy(update={"judge": "semantic"})})))


def test_cold_start_protocol_retrains_on_the_truncated_fold_and_reports_per_n(tmp_path):
    from flows.experiment import experiment

    ratings = write_planted_csv(tmp_path)
    cfg = load_config(
        None,
        {
            "dataset.name": "csv",
            "dataset.ratings_path": str(ratings),
            "split.n_folds": 3,
            "split.folds": [1],
            "models.names": ["popularity", "bpr-mf"],
            "models.training.max_epochs": 5,
            "evaluation.n_recommendations": 20,
            "evaluation.protocols": ["full"],
            "evaluation.cold_start_protocol": {"enabled": True, "share": 0.5, "n": [1, 3]},
            "rerank.strategies": ["prompt"],
            "rerank.pool_size": 8,
            "artifacts_dir": str(tmp_path / "artifacts"),
            "run_name": "cs",
        },
    )
    summary = experiment(cfg)
    run_dir = Path(cfg.artifacts_dir) / "cs"
    metrics = pl.read_parquet(run_dir / "metrics_per_user.parquet")
    segments = {"all", "cold-start", "cold-start-n1", "cold-start-n3"}
    assert set(metrics["segment"]) == segments
    cost = pl.read_parquet(run_dir / "rerank_cost.parquet")
    base = cost["base"][0]  # chosen on the fold's validation
    assert base in cfg.models.names and set(cost["variant"]) == {"main", "cold-start"}
    methods = {"popularity", "bpr-mf", f"{base}+prompt"}
    for segment in ("cold-start-n1", "cold-start-n3"):
        part = metrics.filter(pl.col("segment") == segment)
        assert set(part["model"]) == methods
        assert part["user_idx"].n_unique() <= 30 // 2  # about half of the truncated users, per n
    full, cold = (json.loads((run_dir / name).read_text()) for name in ("training.json", "training-cold-start.json"))
    searched, pinned = (next(log for log in logs if log["model"] == "bpr-mf") for logs in (full, cold))
    assert len(searched["trials"]) == 3 and len(pinned["trials"]) == 1  # one fit with the full fold's choice
    assert pinned["selected"] == searched["selected"]
    n1 = set(metrics.filter(pl.col("segment") == "cold-start-n1")["user_idx"])
    assert not n1 & set(metrics.filter(pl.col("segment") == "cold-start-n3")["user_idx"])
    summary = (run_dir / "summary.md").read_text()
    assert "NDCG@10 (new, n = 1)" in summary and "NDCG@10 (new, n = 3)" in summary
    report = (run_dir / "report.md").read_text()
    assert "## Cold-start protocol" in report and (run_dir / "figures" / "rerank-full.png").is_file()
