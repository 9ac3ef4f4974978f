"""The experiment flow end to end on a tiny planted dataset, through Prefect (ephemeral mode)."""

import json
from pathlib import Path

import polars as pl
import pytest

from e2ep.runtime import work_dir
from flows.config import load_config
from tests.synthetic import write_planted_csv


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    ratings = write_planted_csv(root)
    return load_config(
        None,
        {
            "dataset.name": "csv",
            "dataset.ratings_path": str(ratings),
            "split.n_folds": 3,
            "split.folds": [1, 2],
            "models.names": ["popularity", "bpr-mf", "lightgcn"],
            "models.training.max_epochs": 30,
            "models.training.eval_every": 5,
            "models.training.seeds": [0, 1],
            "models.lightgcn.num_layers": [2],
            "evaluation.n_recommendations": 20,
            "rerank.strategies": [],
            "artifacts_dir": str(root / "artifacts"),
            "run_name": "first",
        },
    )


def test_experiment_runs_every_stage_and_caches_training(config):
    from flows.experiment import experiment

    earlier = set((work_dir() / "recommendations").glob("*.parquet"))  # other tests' runs share the work folder
    headline = experiment(config)
    run_dir = Path(config.artifacts_dir) / "first"
    for name in (
        "summary.md",
        "summary.parquet",
        "metrics_per_user.parquet",
        "recommendations.parquet",
        "significance.parquet",
        "config.json",
    ):
        assert (run_dir / name).is_file(), name
    # The console gets one table (full protocol, all users) and a pointer to the report for everything else.
    for model in ("popularity", "bpr-mf", "lightgcn"):
        assert f"| {model}" in headline
    assert "paper" not in headline.split("Everything else")[0] and str(run_dir / "report.md") in headline
    summary = (run_dir / "summary.md").read_text()
    assert headline in summary  # both rendered from the one RunSummary
    assert json.loads((run_dir / "config.json").read_text()) == config.model_dump(mode="json")  # as given
    assert "paper" in summary and "cold" in summary.lower()
    # No LLM configured: template profiles for items and each fold's users, labelled so, and embedded.
    assert "## Semantic layer" in summary and "template" in summary
    items = pl.read_parquet(run_dir / "profiles" / "items.parquet")
    assert items.height == 40 and set(items["profile_source"]) == {"template"}
    assert items["profile"].str.contains("## Overview").all() and items["profile"].str.contains("## Dislikes").all()
    assert {p.name for p in (run_dir / "profiles").iterdir()} == {
        "items.parquet",
        "users-fold1.parquet",
        "users-fold2.parquet",
    }

    table = pl.read_parquet(run_dir / "summary.parquet")
    ndcg = {
        r["model"]: r["mean"]
        for r in table.filter(
            (pl.col("metric") == "ndcg")
            & (pl.col("k") == 10)
            & (pl.col("protocol") == "full")
            & (pl.col("segment") == "all")
        ).to_dicts()
    }
    # The planted taste groups are learnable: the graph model must beat global popularity.
    assert ndcg["lightgcn"] > ndcg["popularity"]

    recs = pl.read_parquet(run_dir / "recommendations.parquet")
    assert set(recs["model"].unique()) == {"popularity", "bpr-mf", "lightgcn"}
    assert recs.group_by("model", "fold", "seed", "user_id").len()["len"].max() == 20
    # Two seeds: bpr-mf and lightgcn run twice per fold; popularity's second seed repeats its lists exactly, so
    # it is one run per fold, not a replicate.
    runs = dict(table.filter(pl.col("metric") == "ndcg").group_by("model").agg(pl.col("n_runs").max()).rows())
    assert runs == {"popularity": 2, "bpr-mf": 4, "lightgcn": 4}
    assert set(pl.read_parquet(run_dir / "metrics_per_user.parquet")["seed"]) == {0, 1}

    trained = sorted(set((work_dir() / "recommendations").glob("*.parquet")) - earlier)
    stamps = {p: p.stat().st_mtime_ns for p in trained}
    assert len(trained) == 12  # 3 models x 2 folds x 2 seeds

    second = experiment(config.model_copy(update={"run_name": "second"}))
    assert {p: p.stat().st_mtime_ns for p in trained} == stamps, "a cached run must not re-train"
    assert sorted(set((work_dir() / "recommendations").glob("*.parquet")) - earlier) == trained
    # Same cached inputs, same numbers: only the run folder differs.
    assert second.replace("second", "first") == headline
