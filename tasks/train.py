"""Training stage: fit one recommender on one fold and store its top-n lists. The expensive, cached step."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import polars as pl
import torch
from prefect import get_run_logger, task
from pydantic import BaseModel

from data.config import RelevanceConfig
from e2ep.errors import DataError
from e2ep.pool import run_cpu_bound
from e2ep.runtime import work_dir
from e2ep.store import FileRef, stable_hash, write_parquet
from flows.config import AblationConfig
from models.base import FoldData, fold_data, recommendations_frame
from models.config import ModelsConfig
from models.registry import build_model, model_class
from rerank.method import Method
from tasks.caching import ModelCode, code_and_inputs
from tasks.data import DatasetRef, FoldRef


class TrainedRef(BaseModel, frozen=True):
    model: str
    fold: int
    recommendations: FileRef
    log: dict[str, Any]
    seed: int = 0
    validation_recommendations: FileRef | None = None
    """Top-n of every user with validation ratings, ranked with only the fit part of training excluded (the stored
    `recommendations` exclude validation items as seen): validation items are the relevant ones here. Used to
    choose the rerankers' base model and fusion on validation, never on test."""


def settings_for(name: str, cfg: ModelsConfig) -> ModelsConfig:
    """The part of the models config `name` depends on (its own section and `training`), so tuning one model never
    retrains another."""
    section = model_class(name).config_field
    keep = {"training"} | ({section} if section else set())
    return ModelsConfig(names=[name]).model_copy(update={k: getattr(cfg, k) for k in keep})


class NodeFeatures(BaseModel, frozen=True):
    """Profile embeddings of the graph's nodes: `.npy` matrices `[n_items, d]` and `[n_users, d]`, row = node index
    (no user matrix when the model derives user text from the items, `models.gat.user_text = "liked_items"`)."""

    items: FileRef
    users: FileRef | None = None


class TrainJob(BaseModel, frozen=True):
    """One method to fit on a fold: its label in tables, the registered model behind it, the model's settings and
    (for models that read them) the node features. Everything here is part of the training cache key."""

    label: str
    model: str
    settings: ModelsConfig
    features: NodeFeatures | None = None


def model_job(name: str, models: ModelsConfig, features: NodeFeatures | None) -> TrainJob:
    """The job for a model of `models.names`; features are attached only if the model reads them, so changing
    the profiles never retrains a model that ignores them."""
    uses = model_class(name).uses_features
    return TrainJob(label=name, model=name, settings=settings_for(name, models), features=features if uses else None)


def pinned_job(job: TrainJob, selected: dict[str, Any]) -> TrainJob:
    """`job` with its hyperparameter search replaced by the values another fit chose on validation (`selected`,
    from `TrainingLog.selected`): one fit instead of a search. The GAT's `selection_grid` is emptied and its
    fields set; every other model's searched axes become one-value lists, with a budget of one trial."""
    cls = model_class(job.model)
    section = cls.config_field
    if not selected or section is None:
        return job
    pinned = cls.pin(getattr(job.settings, section), selected)
    return job.model_copy(update={"settings": job.settings.model_copy(update={section: pinned})})


def ablation_job(ablation: AblationConfig, models: ModelsConfig, features: NodeFeatures | None) -> TrainJob:
    """The GAT variant `gat/<name>`: `gat-id` when it has no text features, else `gat` on `features`."""
    model = "gat-id" if ablation.features == "none" else "gat"
    settings = settings_for(model, models)
    if ablation.cosine_weight is not None:
        settings = settings.model_copy(
            update={"gat": settings.gat.model_copy(update={"cosine_weight": ablation.cosine_weight})}
        )
    if ablation.features == "precomputed-items" and features is not None:
        # user text from the fold's own liked items: no user profile (the authors' saw fold 1's ratings only)
        settings = settings.model_copy(update={"gat": settings.gat.model_copy(update={"user_text": "liked_items"})})
        features = features.model_copy(update={"users": None})
    return TrainJob(
        label=str(Method.ablation(ablation.name)),
        model=model,
        settings=settings,
        features=None if model == "gat-id" else features,
    )


def _load_matrix(ref: FileRef, rows: int) -> torch.Tensor:
    matrix = np.load(ref.path)
    if matrix.ndim != 2 or matrix.shape[0] != rows:
        raise DataError(f"node features {ref.path} have shape {matrix.shape}, expected {rows} rows")
    return torch.from_numpy(matrix.astype(np.float32))


def with_features(data: FoldData, features: NodeFeatures | None) -> FoldData:
    if features is None:
        return data
    users = None if features.users is None else _load_matrix(features.users, data.n_users)
    return dataclasses.replace(data, item_features=_load_matrix(features.items, data.n_items), user_features=users)


def validation_ranking_frame(model: Any, data: FoldData, n: int) -> pl.DataFrame:
    """`user_idx, item_idx, rank, score` for users with validation ratings, excluding `data.train_pairs` only."""
    users = np.sort(data.validation["user_idx"].unique().to_numpy()).astype(np.int64)
    if not len(users):
        return pl.DataFrame(schema={"user_idx": pl.Int32, "item_idx": pl.Int32, "rank": pl.Int32, "score": pl.Float32})
    items, scores = model.recommend(torch.from_numpy(users), n, exclude=data.train_pairs)
    width = items.shape[1]
    return pl.DataFrame(
        {
            "user_idx": np.repeat(users, width).astype(np.int32),
            "item_idx": items.reshape(-1).numpy().astype(np.int32),
            "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), len(users)),
            "score": scores.reshape(-1).numpy().astype(np.float32),
        }
    )


def train_and_recommend(
    job: TrainJob, relevance: RelevanceConfig, dataset: DatasetRef, fold: FoldRef, n_recommendations: int
) -> TrainedRef:
    data = fold_data(
        fold.load().train, dataset.n_users, dataset.n_items, relevance.positive_threshold, relevance.negative_threshold
    )
    data = with_features(data, job.features)
    started = time.perf_counter()
    model = build_model(job.model, job.settings).fit(data)
    recs = recommendations_frame(model, data, n_recommendations)
    validation_recs = validation_ranking_frame(model, data, n_recommendations)
    log = {**model.training_log.as_dict(), "seconds": round(time.perf_counter() - started, 2)}
    key = stable_hash(job, relevance, dataset.digest, fold.digest, n_recommendations)
    path = work_dir() / "recommendations" / f"{job.label.replace('/', '_')}-fold{fold.number}-{key}.parquet"
    return TrainedRef(
        model=job.label,
        fold=fold.number,
        recommendations=write_parquet(recs, path),
        log=log,
        seed=job.settings.training.seed,
        validation_recommendations=write_parquet(validation_recs, work_dir() / "validation-rankings" / path.name),
    )


@task(
    name="train-and-recommend",
    cache_policy=code_and_inputs("tasks.train") + ModelCode(),
    persist_result=True,
    task_run_name="train-{job.label}-fold{fold.number}",
)
def train_and_recommend_task(
    job: TrainJob, relevance: RelevanceConfig, dataset: DatasetRef, fold: FoldRef, n_recommendations: int
) -> TrainedRef:
    trained = run_cpu_bound(train_and_recommend, job, relevance, dataset, fold, n_recommendations)
    log = trained.log
    get_run_logger().info(
        "fold %d %s: %s epochs (best %s), validation NDCG@10 %.4f, %.1f s",
        fold.number,
        job.label,
        log.get("epochs_run", 0),
        log.get("best_epoch", 0),
        log.get("best_validation_ndcg10", float("nan")),
        log["seconds"],
    )
    return trained
