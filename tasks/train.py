"""Training stage: fit one recommender on one fold and store its top-n lists. The expensive, cached step."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from pydantic import BaseModel

from e2ep.config import ModelsConfig, RelevanceConfig
from e2ep.runtime import work_dir
from e2ep.store import FileRef, stable_hash, write_parquet
from models.base import fold_data, recommendations_frame
from models.registry import build_model
from tasks.caching import code_and_inputs
from tasks.data import DatasetRef, FoldRef


class TrainedRef(BaseModel, frozen=True):
    model: str
    fold: int
    recommendations: FileRef
    log: dict[str, Any]


def settings_for(name: str, cfg: ModelsConfig) -> ModelsConfig:
    """The part of the models config `name` depends on, so tuning one model never retrains another."""
    section = "gat" if name == "gat-id" else name.replace("-", "_")
    keep = {"training"} | ({section} if section in ModelsConfig.model_fields else set())
    return ModelsConfig(names=[name]).model_copy(update={k: getattr(cfg, k) for k in keep})


def train_and_recommend(name: str, models: ModelsConfig, relevance: RelevanceConfig, dataset: DatasetRef,
                        fold: FoldRef, n_recommendations: int) -> TrainedRef:
    data = fold_data(fold.load().train, dataset.n_users, dataset.n_items,
                     relevance.positive_threshold, relevance.negative_threshold)
    started = time.perf_counter()
    model = build_model(name, models).fit(data)
    recs = recommendations_frame(model, data, n_recommendations)
    training_log = getattr(model, "training_log", None)
    log = {**(training_log.as_dict() if training_log is not None else {}),
           "seconds": round(time.perf_counter() - started, 2)}
    key = stable_hash(name, models, relevance, dataset.digest, fold.digest, n_recommendations)
    path = work_dir() / "recommendations" / f"{name}-fold{fold.number}-{key}.parquet"
    return TrainedRef(model=name, fold=fold.number, recommendations=write_parquet(recs, path), log=log)


@task(name="train-and-recommend", cache_policy=code_and_inputs("models"), persist_result=True,
      task_run_name="train-{name}-fold{fold.number}")
def train_and_recommend_task(name: str, models: ModelsConfig, relevance: RelevanceConfig, dataset: DatasetRef,
                             fold: FoldRef, n_recommendations: int) -> TrainedRef:
    trained = train_and_recommend(name, models, relevance, dataset, fold, n_recommendations)
    log = trained.log
    get_run_logger().info("fold %d %s: %s epochs (best %s), validation NDCG@10 %.4f, %.1f s", fold.number, name,
                          log.get("epochs_run", 0), log.get("best_epoch", 0),
                          log.get("best_validation_ndcg10", float("nan")), log["seconds"])
    return trained
