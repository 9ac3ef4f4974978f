"""The `experiment` flow: load → split → one parallel subflow per fold (fit, recommend, evaluate) → aggregate.

```
prepare-dataset ─▶ item-metadata ─▶ item-profiles ─▶ embed-items
       │
       └─▶ split-folds ─┬─▶ fold 1: user-profiles ─▶ embed-users
                        │           train-{model} ─▶ evaluate-{model}   (per model) ─┐
                        │           rerank-{base}+{strategy} ─▶ evaluate      (per strategy)
                        ├─▶ fold 2: …                                                 ├─▶ report
                        └─▶ fold n: …                                                 ┘
```
"""

# No `from __future__ import annotations`: on a Dask worker the subflow arrives pickled by value, and Prefect
# validates its parameters from real annotation objects (string ones name globals the copy does not carry).
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import polars as pl
import torch
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from e2ep.config import ExperimentConfig
from e2ep.data import Dataset
from e2ep.errors import ConfigError
from e2ep.llm import LLMConfig
from e2ep.profiles import ProfilesConfig
from e2ep.store import stable_hash, write_text
from evaluation.report import RunReport, write_run_report
from flows.artifacts import publish_run_artifacts
from flows.runners import fold_task_runner
from rerank.report import rerank_section
from tasks.data import DatasetRef, FoldRef, prepare_dataset_task, split_dataset_task
from tasks.evaluate import EvaluatedRef, evaluate_task
from tasks.rerank import RerankedRef, rerank_task, resolve_rerank_settings
from tasks.semantic import (
    MAIN_VARIANT,
    StageRef,
    embed_task,
    item_metadata_task,
    item_profiles_task,
    preflight_llm,
    profile_variants,
    user_profiles_task,
    variant_of,
)
from tasks.train import NodeFeatures, TrainedRef, TrainJob, ablation_job, model_job, train_and_recommend_task


class ItemSide(BaseModel, frozen=True):
    """One profile variant's item profiles and their embeddings."""

    profiles: ProfilesConfig
    item_profiles: StageRef
    item_embeddings: StageRef


class SemanticResult(BaseModel, frozen=True):
    """Item metadata plus, per profile variant (`main` first, then those ablations need), the item side."""

    metadata: StageRef
    llm: LLMConfig
    variants: dict[str, ItemSide]

    @property
    def item_profiles(self) -> StageRef:
        return self.variants[MAIN_VARIANT].item_profiles

    @property
    def item_embeddings(self) -> StageRef:
        return self.variants[MAIN_VARIANT].item_embeddings


class FoldResult(BaseModel, frozen=True):
    fold: int
    trained: list[TrainedRef]
    evaluated: list[EvaluatedRef]
    user_profiles: StageRef | None = None
    user_embeddings: StageRef | None = None
    reranked: list[RerankedRef] = []


def semantic_items(cfg: ExperimentConfig, dataset: DatasetRef) -> SemanticResult:
    """Item metadata, and item profiles and their embeddings for every profile variant (shared by every fold)."""
    variants, llm = profile_variants(cfg)
    metadata = item_metadata_task(dataset, cfg.metadata)
    sides = {}
    for key, profiles in variants.items():
        items = item_profiles_task(dataset, metadata, profiles, llm)
        sides[key] = ItemSide(profiles=profiles, item_profiles=items,
                              item_embeddings=embed_task(items, "item_idx", dataset.n_items, cfg.embedding))
    return SemanticResult(metadata=metadata, llm=llm, variants=sides)


@flow(name="fold", flow_run_name="fold-{fold.number}")
def fold_flow(cfg: ExperimentConfig, dataset: DatasetRef, fold: FoldRef,
              semantic: SemanticResult | None = None) -> FoldResult:
    """Build the fold's user profiles (from its training ratings only), fit every model and ablation, evaluate."""
    user_side: dict[str, tuple[StageRef, StageRef]] = {}
    features: dict[str | None, NodeFeatures | None] = {None: None}
    if semantic is not None:
        for key, side in semantic.variants.items():
            if side.profiles.backend == "precomputed" and (fold.number != side.profiles.precomputed_user_fold
                                                           or not side.profiles.precomputed_users_path):
                # the authors' user profiles are missing or not valid here (the config refuses that for every
                # variant but `precomputed-items`, whose users are their liked items): the item side only
                features[key] = NodeFeatures(items=side.item_embeddings.file)
                continue
            users = user_profiles_task(dataset, fold, semantic.metadata, side.profiles, semantic.llm)
            vectors = embed_task(users, "user_idx", dataset.n_users, cfg.embedding)
            user_side[key] = (users, vectors)
            features[key] = NodeFeatures(items=side.item_embeddings.file, users=vectors.file)
    main = features.get(MAIN_VARIANT)
    jobs = [model_job(name, cfg.models, main) for name in cfg.models.names]
    if cfg.ablations:
        profiles = semantic.variants[MAIN_VARIANT].profiles if semantic is not None else cfg.profiles
        jobs += [ablation_job(a, cfg.models, features[variant_of(a, profiles)]) for a in cfg.ablations]
    trained = train_distinct(jobs, cfg, dataset, fold)
    evaluated = [evaluate_task(t, fold, dataset, cfg.evaluation, cfg.relevance) for t in trained]
    users, user_vectors = user_side.get(MAIN_VARIANT, (None, None))
    reranked = rerank_fold(cfg, fold, trained, semantic, users, user_vectors)
    evaluated += [evaluate_task(r, fold, dataset, cfg.evaluation, cfg.relevance) for r in reranked]
    return FoldResult(fold=fold.number, trained=trained, evaluated=evaluated, user_profiles=users,
                      user_embeddings=user_vectors, reranked=reranked)


def train_distinct(jobs: list[TrainJob], cfg: ExperimentConfig, dataset: DatasetRef,
                   fold: FoldRef) -> list[TrainedRef]:
    """Fit each distinct (model, settings, features) once: an ablation that equals a model of the run (e.g.
    `features = "none"` beside `gat-id`, or the run's own profiles beside `gat`) reuses its lists under its label."""
    fitted: dict[str, TrainedRef] = {}
    trained = []
    for job in jobs:
        key = stable_hash(job.model, job.settings, job.features)
        if key not in fitted:
            fitted[key] = train_and_recommend_task(job, cfg.relevance, dataset, fold,
                                                   cfg.evaluation.n_recommendations)
        trained.append(fitted[key].model_copy(update={"model": job.label}))
    return trained


def rerank_fold(cfg: ExperimentConfig, fold: FoldRef, trained: list[TrainedRef], semantic: SemanticResult | None,
                users: StageRef | None, user_vectors: StageRef | None) -> list[RerankedRef]:
    """Each configured strategy reranks the base model's lists (one strategy at a time: an LLM judge already
    runs `llm.concurrency` requests at once)."""
    if not cfg.rerank.strategies:
        return []
    if semantic is None or users is None or user_vectors is None:
        raise ConfigError("reranking needs the semantic layer (profiles and embeddings); set rerank.strategies=[]")
    rerank, llm = resolve_rerank_settings(cfg)
    base = next((t for t in trained if t.model == rerank.base_model), None)
    if base is None:
        raise ConfigError(f"rerank.base_model {rerank.base_model!r} was not trained; add it to models.names")
    return [rerank_task(base, strategy, rerank.model_copy(update={"strategies": [strategy]}), llm, cfg.embedding,
                        fold, semantic.item_profiles, users, semantic.item_embeddings, user_vectors,
                        cfg.relevance.positive_threshold)
            for strategy in rerank.strategies]


@task(name="run-fold", cache_policy=NO_CACHE, task_run_name="run-fold-{fold.number}")
def run_fold(cfg: ExperimentConfig, dataset: DatasetRef, fold: FoldRef,
             semantic: SemanticResult | None) -> FoldResult:
    # A task that calls the subflow lets the flow's task runner run folds side by side.
    return fold_flow(cfg, dataset, fold, semantic)


def collect_results(cfg: ExperimentConfig, dataset: DatasetRef, results: list[FoldResult],
                    semantic: SemanticResult | None, run_dir: Path) -> RunReport:
    """Gather every fold's files into the run folder, with original user and item ids."""
    data = dataset.load()
    per_user = pl.concat([e.per_user.read_parquet() for r in results for e in r.evaluated], how="vertical_relaxed")
    catalog = pl.concat([e.catalog.read_parquet() for r in results for e in r.evaluated], how="vertical_relaxed")
    recs = pl.concat([
        t.recommendations.read_parquet().with_columns(pl.lit(t.model).alias("model"), pl.lit(t.fold).alias("fold"))
        for r in results for t in [*r.trained, *r.reranked]
    ])
    recs = (recs.join(data.users.select("user_idx", "user_id"), on="user_idx")
                .join(data.items.select("item_idx", "item_id"), on="item_idx")
                .select("model", "fold", "user_id", "item_id", "rank", "score")
                .sort("model", "fold", "user_id", "rank"))
    logs = [{"model": t.model, "fold": t.fold, **t.log} for r in results for t in r.trained]
    profiles: dict[str, StageRef] = {}
    if semantic is not None:
        profiles = {"items": semantic.item_profiles, **{f"users-fold{r.fold}": r.user_profiles for r in results
                                                        if r.user_profiles is not None}}
    semantic_report = None if semantic is None else {
        "metadata": semantic.metadata.report,
        "profiles": {name: ref.report for name, ref in profiles.items()},
        "embeddings": {"items": semantic.item_embeddings.report,
                       **{f"users-fold{r.fold}": r.user_embeddings.report for r in results if r.user_embeddings}},
    }
    reranked = [t for r in results for t in r.reranked]
    explanations, cost = rerank_frames(data, reranked) if reranked else (None, None)
    report = write_run_report(run_dir, cfg, per_user, catalog, recs, logs, semantic_report,
                              {name: ref.file.read_parquet() for name, ref in profiles.items()},
                              explanations=explanations, rerank_cost=cost, item_titles=item_titles(data))
    if explanations is not None and cost is not None:
        report = with_rerank_section(cfg, report, cost)
    return report


def item_titles(data: Dataset) -> pl.DataFrame | None:
    return data.items.select("item_id", "title") if "title" in data.items.columns else None


def rerank_frames(data: Dataset, reranked: list[RerankedRef]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every reranked list's explanations (with original ids) and the cost of each (method, fold)."""
    explanations = pl.concat([
        r.explanations.read_parquet().with_columns(pl.lit(r.model).alias("model"), pl.lit(r.fold).alias("fold"))
        for r in reranked
    ], how="vertical_relaxed")
    explanations = (explanations.join(data.users.select("user_idx", "user_id"), on="user_idx")
                                .join(data.items.select("item_idx", "item_id"), on="item_idx")
                                .select("model", "fold", "user_id", "item_id", "rank", "explanation")
                                .sort("model", "fold", "user_id", "rank"))
    return explanations, pl.DataFrame([{"model": r.model, "fold": r.fold, **r.cost} for r in reranked])


def with_rerank_section(cfg: ExperimentConfig, report: RunReport, cost: pl.DataFrame) -> RunReport:
    """The summary's Reranking section: the paper's Table 1 shape, calls and tokens per user."""
    rr, _ = resolve_rerank_settings(cfg)
    methods = list(dict.fromkeys(cost["model"].to_list()))
    settings = (f"Judge **{rr.judge}**; each strategy reranks the top {rr.pool_size} of `{rr.base_model}`; fused "
                f"score = {rr.judge_weight:g} · judge + {rr.base_weight:g} · {rr.base_model} (both {rr.normalisation}"
                f"-normalised within the pool); the rest of each list follows unchanged.")
    section = rerank_section(report.summary, cost, rr.base_model, methods, settings)
    markdown = report.markdown + "\n" + section
    write_text(markdown, report.directory / "summary.md")
    return replace(report, markdown=markdown)


collect_results_task = task(collect_results, name="report", cache_policy=NO_CACHE, persist_result=False)


def default_run_name(cfg: ExperimentConfig) -> str:
    return cfg.run_name or f"{cfg.dataset.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


@flow(name="experiment", task_runner=ThreadPoolTaskRunner(max_workers=8))
def experiment(config: ExperimentConfig = ExperimentConfig()) -> str:
    """Run a cross-validated comparison of recommenders and write `artifacts/<run>/`; returns the summary."""
    logger = get_run_logger()
    run_dir = Path(config.artifacts_dir) / default_run_name(config)
    preflight_llm(config)
    dataset = prepare_dataset_task(config.dataset)
    logger.info("dataset %s: %d users, %d items", dataset.name, dataset.n_users, dataset.n_items)
    semantic = semantic_items(config, dataset) if config.semantic else None
    folds = split_dataset_task(dataset, config.split)

    # Folds share the machine's cores: give each its slice instead of oversubscribing.
    parallel = max(1, min(config.parallel_folds, len(folds)))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // parallel))
    results: list[FoldResult] = []
    with fold_task_runner(config, parallel) as runner:  # threads, or a Dask cluster (config.task_runner)
        for start in range(0, len(folds), parallel):
            futures = [runner.submit(run_fold, {"cfg": config, "dataset": dataset, "fold": f, "semantic": semantic})
                       for f in folds[start:start + parallel]]
            results.extend(f.result() for f in futures)

    report = collect_results_task(config, dataset, results, semantic, run_dir)
    publish_run_artifacts(run_dir, report)
    logger.info("results written to %s", run_dir)
    return report.markdown
