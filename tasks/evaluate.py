"""Evaluation stage: score one model's recommendations on one fold's test data."""

from __future__ import annotations

import polars as pl
from prefect import task
from pydantic import BaseModel

from data.config import RelevanceConfig
from e2ep.runtime import work_dir
from e2ep.store import FileRef, stable_hash, write_parquet
from evaluation.config import EvaluationConfig
from evaluation.fold import evaluate_fold
from tasks.caching import code_and_inputs
from tasks.data import DatasetRef, FoldRef
from tasks.train import TrainedRef


class EvaluatedRef(BaseModel, frozen=True):
    model: str
    fold: int
    per_user: FileRef
    catalog: FileRef
    seed: int = 0


def evaluate_trained(
    trained: TrainedRef,
    fold: FoldRef,
    dataset: DatasetRef,
    cfg: EvaluationConfig,
    relevance: RelevanceConfig,
    users: list[int] | None = None,
) -> EvaluatedRef:
    """`users`: evaluate on these users only (lists and test ratings of the others are left out), e.g. the
    `rerank.max_users` sample."""
    data = fold.load()
    recs, test = trained.recommendations.read_parquet(), data.test
    if users is not None:
        recs = recs.filter(pl.col("user_idx").is_in(users))
        test = test.filter(pl.col("user_idx").is_in(users))
    per_user, catalog = evaluate_fold(
        recs,
        data.train,
        test,
        cfg=cfg,
        relevance_threshold=relevance.positive_threshold,
        n_items=dataset.n_items,
        cold_start_plan=fold.cold_start_plan(),
    )
    labels = [
        pl.lit(trained.model).alias("model"),
        pl.lit(trained.fold).alias("fold"),
        pl.lit(trained.seed, pl.Int64).alias("seed"),
    ]
    key = stable_hash(trained.recommendations.digest, fold.digest, cfg, relevance, *([] if users is None else [users]))
    root = work_dir() / "metrics"
    stem = f"{trained.model}-fold{fold.number}-seed{trained.seed}-{key}"
    return EvaluatedRef(
        model=trained.model,
        fold=trained.fold,
        per_user=write_parquet(per_user.with_columns(labels), root / f"{stem}-users.parquet"),
        catalog=write_parquet(catalog.with_columns(labels), root / f"{stem}-catalog.parquet"),
        seed=trained.seed,
    )


# task(...)(fn), as the decorator does: prefect's overloads type no task(fn, name=...) call.
evaluate_task = task(
    name="evaluate",
    cache_policy=code_and_inputs("tasks.evaluate"),
    persist_result=True,
    task_run_name="evaluate-{trained.model}-fold{trained.fold}",
)(evaluate_trained)
