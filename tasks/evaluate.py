"""Evaluation stage: score one model's recommendations on one fold's test data."""

from __future__ import annotations

import polars as pl
from prefect import task
from pydantic import BaseModel

from e2ep.config import EvaluationConfig, RelevanceConfig
from e2ep.runtime import work_dir
from e2ep.store import FileRef, stable_hash, write_parquet
from evaluation.fold import evaluate_fold
from tasks.caching import code_and_inputs
from tasks.data import DatasetRef, FoldRef
from tasks.train import TrainedRef


class EvaluatedRef(BaseModel, frozen=True):
    model: str
    fold: int
    per_user: FileRef
    catalog: FileRef


def evaluate_trained(trained: TrainedRef, fold: FoldRef, dataset: DatasetRef, cfg: EvaluationConfig,
                     relevance: RelevanceConfig) -> EvaluatedRef:
    data = fold.load()
    per_user, catalog = evaluate_fold(trained.recommendations.read_parquet(), data.train, data.test, cfg=cfg,
                                      relevance_threshold=relevance.positive_threshold, n_items=dataset.n_items,
                                      cold_start_plan=fold.cold_start_plan())
    labels = [pl.lit(trained.model).alias("model"), pl.lit(trained.fold).alias("fold")]
    key = stable_hash(trained.recommendations.digest, fold.digest, cfg, relevance)
    root = work_dir() / "metrics"
    return EvaluatedRef(
        model=trained.model,
        fold=trained.fold,
        per_user=write_parquet(per_user.with_columns(labels), root / f"{trained.model}-fold{fold.number}-{key}-users.parquet"),
        catalog=write_parquet(catalog.with_columns(labels), root / f"{trained.model}-fold{fold.number}-{key}-catalog.parquet"),
    )


evaluate_task = task(evaluate_trained, name="evaluate", cache_policy=code_and_inputs("evaluation"),
                     persist_result=True, task_run_name="evaluate-{trained.model}-fold{trained.fold}")
