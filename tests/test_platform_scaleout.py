"""Fold subflows on a Dask cluster (prefect-dask), and the run's UI artifacts read back through Prefect's API."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl
import pytest

from flows.config import load_config
from flows.runners import fold_task_runner
from tests.synthetic import write_planted_csv


def tiny_config(root: Path, run_name: str, **extra):
    ratings = write_planted_csv(root, n_users=30, n_items=20, per_user=10)
    return load_config(
        None,
        {
            "dataset.name": "csv",
            "dataset.ratings_path": str(ratings),
            "split.n_folds": 3,
            "split.folds": [1, 2],
            "split.official": False,
            "models.names": ["popularity", "bpr-mf"],
            "models.training.max_epochs": 10,
            "evaluation.n_recommendations": 20,
            "evaluation.protocols": ["full"],
            "semantic": False,
            "artifacts_dir": str(root / "artifacts"),
            "run_name": run_name,
            **extra,
        },
    )


def test_the_config_picks_the_fold_runner(tmp_path):
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    threads = fold_task_runner(tiny_config(tmp_path, "a"), 2)
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 2
    remote = fold_task_runner(tiny_config(tmp_path, "b", task_runner="dask", dask_address="tcp://10.0.0.5:8786"), 2)
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    local = fold_task_runner(tiny_config(tmp_path, "c", task_runner="dask", dask_processes=False), 3)
    assert local.cluster_kwargs["n_workers"] == 3 and local.cluster_kwargs["threads_per_worker"] == 1
    with pytest.raises(ValueError, match="task_runner"):
        tiny_config(tmp_path, "d", task_runner="ray")


def test_folds_run_on_a_local_dask_cluster_and_the_run_publishes_its_artifacts(tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from evaluation.summary import RunSummary
    from flows.artifacts import llm_usage_frame, publish_run_artifacts, with_total
    from flows.experiment import experiment

    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    dask_log = logging.getLogger("prefect.task_runner.dask")
    level = dask_log.level
    dask_log.addHandler(handler)
    dask_log.setLevel(logging.INFO)
    try:
        cfg = tiny_config(tmp_path, "dask", task_runner="dask", dask_processes=False)
        state = experiment(cfg, return_state=True)
    finally:
        dask_log.removeHandler(handler)
        dask_log.setLevel(level)
    assert state.is_completed(), state
    assert any("Creating a new Dask cluster" in m and "LocalCluster" in m for m in messages), messages

    run_dir = tmp_path / "artifacts" / "dask"
    per_user = pl.read_parquet(run_dir / "metrics_per_user.parquet")
    assert sorted(per_user["fold"].unique()) == [1, 2]
    assert set(per_user["model"].unique()) == {"popularity", "bpr-mf"}

    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        folds = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [flow_run_id]}))
        assert sorted(r.name for r in folds if r.state.is_completed()) == ["fold-1", "fold-2"]
        artifacts = {
            a.key: a
            for a in client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        }
    assert {"experiment-results", "experiment-summary", "experiment-report", "experiment-folder"} <= set(artifacts)
    assert "llm-cost" not in artifacts and "rerank-cost" not in artifacts  # no semantic layer, no reranking here
    report = artifacts["experiment-report"].data
    assert f"]({run_dir.resolve().as_uri()})" in report and "summary.md" in report

    # A reranking cost frame found in the run folder becomes its own table, with a total row.
    pl.DataFrame(
        {
            "model": ["gat", "gat"],
            "fold": [1, 2],
            "users": [30, 30],
            "calls": [30, 28],
            "prompt_tokens": [900, 800],
            "completion_tokens": [300, 280],
            "cache_hits": [0, 2],
            "repairs": [1, 0],
            "fallbacks": [0, 1],
        }
    ).write_parquet(run_dir / "rerank_cost.parquet")
    semantic = {
        "profiles": {
            "items": {
                "llm_usage": {
                    "stages": {
                        "item-profiles": {
                            "requests": 20,
                            "calls": 21,
                            "cache_hits": 0,
                            "repairs": 1,
                            "prompt_tokens": 2000,
                            "completion_tokens": 900,
                            "cost_usd": 0.0125,
                        }
                    }
                }
            },
            "users-fold1": {"counts": {"template": 30}},
        }
    }
    (run_dir / "semantic.json").write_text(json.dumps(semantic))

    @flow(name="publish")
    def publish() -> str:
        summary = pl.read_parquet(run_dir / "summary.parquet")
        publish_run_artifacts(
            run_dir, RunSummary(run_dir, summary, pl.DataFrame(), "bpr-mf", "configured", "# results", "", "")
        )
        return "ok"

    published = publish(return_state=True)
    with get_client(sync_client=True) as client:
        tables = {
            a.key: json.loads(a.data)
            for a in client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[published.state_details.flow_run_id]))
            )
            if a.type == "table"
        }
    rerank = tables["rerank-cost"]
    assert rerank[-1]["model"] == "total" and rerank[-1]["calls"] == 58 and rerank[-1]["fold"] is None
    llm = tables["llm-cost"]
    assert llm[0] == {**llm[0], "stage": "items", "llm_stage": "item-profiles", "calls": 21, "cost_usd": 0.0125}
    assert llm[-1]["stage"] == "total" and len(llm) == 2  # template-only user profiles add no row
    assert with_total(llm_usage_frame({"profiles": {}}), "stage").is_empty()
