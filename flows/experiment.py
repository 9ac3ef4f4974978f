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
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.transactions import CommitMode, transaction

from data.splits import small_fold_warnings
from e2ep.errors import ConfigError
from e2ep.llm.budget import spend_cap
from e2ep.pool import worker_pool
from e2ep.runtime import work_dir
from e2ep.store import stable_hash
from flows.artifacts import publish_run_artifacts
from flows.config import ExperimentConfig, rerank_settings, resolve_auto, run_settings
from flows.rerun import default_run_name
from flows.runners import fold_task_runner
from rerank.method import Method
from rerank.run import rerank_sample
from rerank.selection import BaseChoice, best_on_validation
from tasks.data import DatasetRef, FoldRef, cold_start_split_task, prepare_dataset_task, split_dataset_task
from tasks.estimate import check_caps, estimate_run
from tasks.evaluate import EvaluatedRef, evaluate_task
from tasks.report import report_task
from tasks.rerank import RerankedRef, rerank_task
from tasks.results import ColdStartResult, FoldResult, ItemSide, SemanticResult
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
from tasks.train import (
    NodeFeatures,
    TrainedRef,
    TrainJob,
    ablation_job,
    model_job,
    pinned_job,
    train_and_recommend_task,
)

SMALL_DATA = 500  # fewer users or items than this: check each fold's size before training


def semantic_items(cfg: ExperimentConfig, dataset: DatasetRef) -> SemanticResult:
    """Item metadata, and item profiles and their embeddings for every profile variant (shared by every fold)."""
    variants, llm = profile_variants(cfg)
    metadata = item_metadata_task(dataset, cfg.metadata)
    sides = {}
    for key, profiles in variants.items():
        items = item_profiles_task(dataset, metadata, profiles, llm)
        sides[key] = ItemSide(
            profiles=profiles,
            item_profiles=items,
            item_embeddings=embed_task(items, "item_idx", dataset.n_items, cfg.embedding),
        )
    return SemanticResult(metadata=metadata, llm=llm, variants=sides)


# The pyright ignore below: prefect's `flow` takes a TaskRunner[PrefectFuture[Any]], invariant in the future type,
# which no ThreadPoolTaskRunner (its futures are PrefectConcurrentFuture) matches.
@flow(name="fold", flow_run_name="fold-{fold.number}", task_runner=ThreadPoolTaskRunner(max_workers=16))  # pyright: ignore[reportCallIssue, reportArgumentType]
def fold_flow(
    cfg: ExperimentConfig, dataset: DatasetRef, fold: FoldRef, semantic: SemanticResult | None = None
) -> FoldResult:
    """Build the fold's user profiles (from its training ratings only), fit every model and ablation, evaluate."""
    user_side: dict[str, tuple[StageRef, StageRef]] = {}
    features: dict[str | None, NodeFeatures | None] = {None: None}
    if semantic is not None:
        for key, side in semantic.variants.items():
            if side.profiles.backend == "precomputed" and (
                fold.number != side.profiles.precomputed_user_fold or not side.profiles.precomputed_users_path
            ):
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
    evaluated = [
        f.result() for f in [evaluate_task.submit(t, fold, dataset, cfg.evaluation, cfg.relevance) for t in trained]
    ]
    users, user_vectors = user_side.get(MAIN_VARIANT, (None, None))
    bases, base_choice = rerank_bases(cfg, fold, trained) if cfg.rerank.strategies else ([], None)
    reranked = rerank_fold(cfg, fold, trained, semantic, users, user_vectors, bases)
    evaluated += evaluate_reranked(cfg, dataset, fold, bases, reranked)
    cold = (
        cold_start_protocol(cfg, dataset, fold, semantic, [b.model for b in bases], trained)
        if cfg.evaluation.cold_start_protocol.enabled
        else ColdStartResult()
    )
    return FoldResult(
        fold=fold.number,
        trained=trained,
        evaluated=evaluated + cold.evaluated,
        user_profiles=users,
        user_embeddings=user_vectors,
        reranked=reranked,
        base_choice=base_choice,
        cold_start_trained=cold.trained,
        cold_start_reranked=cold.reranked,
        cold_start_user_embeddings=cold.user_embeddings,
    )


def cold_start_protocol(
    cfg: ExperimentConfig,
    dataset: DatasetRef,
    fold: FoldRef,
    semantic: SemanticResult | None,
    bases: list[str],
    full: list[TrainedRef],
) -> ColdStartResult:
    """The fold again with the cold-start protocol's users truncated: their user profiles rebuilt from the kept
    ratings (other users' profiles are the same texts, so their LLM answers and embeddings come from the caches),
    every model of `models.names` retrained, the same base models reranked, and only the truncated users
    evaluated, per n. Ablations are not repeated. With `search = "reuse"` each model is fitted once with the
    hyperparameters it chose on the full fold's validation slice (`full`), instead of searching again."""
    if semantic is not None and semantic.variants[MAIN_VARIANT].profiles.backend == "precomputed":
        get_run_logger().warning(
            "fold %d: the cold-start protocol is skipped: published user profiles were written "
            "from whole histories and cannot be rebuilt from a truncated one",
            fold.number,
        )
        return ColdStartResult()
    truncated = cold_start_split_task(fold, cfg.evaluation.cold_start_protocol)
    plan = truncated.cold_start_plan()
    if plan is None or plan.is_empty():
        get_run_logger().warning(
            "fold %d: the cold-start protocol is skipped: no test user has more than %d "
            "training ratings, or the ratings have no timestamps to order them by",
            fold.number,
            max(cfg.evaluation.cold_start_protocol.n),
        )
        return ColdStartResult()
    features, users, vectors = None, None, None
    if semantic is not None:
        side = semantic.variants[MAIN_VARIANT]
        users = user_profiles_task(dataset, truncated, semantic.metadata, side.profiles, semantic.llm)
        vectors = embed_task(users, "user_idx", dataset.n_users, cfg.embedding)
        features = NodeFeatures(items=side.item_embeddings.file, users=vectors.file)
    selections = (
        {(t.model, t.seed): t.log.get("selected", {}) for t in full}
        if cfg.evaluation.cold_start_protocol.search == "reuse"
        else None
    )
    trained = train_distinct(
        [model_job(name, cfg.models, features) for name in cfg.models.names], cfg, dataset, truncated, selections
    )
    by_label = {t.model: t for t in trained}
    reranked = (
        rerank_fold(cfg, truncated, trained, semantic, users, vectors, [by_label[b] for b in bases]) if bases else []
    )
    evaluated = [evaluate_task(t, truncated, dataset, cfg.evaluation, cfg.relevance) for t in [*trained, *reranked]]
    return ColdStartResult(trained=trained, evaluated=evaluated, reranked=reranked, user_embeddings=vectors)


def train_distinct(
    jobs: list[TrainJob],
    cfg: ExperimentConfig,
    dataset: DatasetRef,
    fold: FoldRef,
    selections: dict[tuple[str, int], dict] | None = None,
) -> list[TrainedRef]:
    """Fit each distinct (model, settings, features) once per seed of `models.training.seeds`: an ablation that
    equals a model of the run (e.g. `features = "none"` beside `gat-id`, or the run's own profiles beside `gat`)
    reuses its lists under its label. A seed that reproduces a method's lists exactly (a deterministic model such
    as popularity) is not a replicate and is dropped, so it does not shrink that method's spread. `selections`
    (label, seed) → hyperparameters pins each job's search to what that fit chose (a seed dropped as a replicate
    takes the label's first seed's choice)."""
    runs = []  # (label, seed, key) in table order
    distinct: dict[str, TrainJob] = {}
    first_choice: dict[str, dict] = {}
    for label_seed, chosen in (selections or {}).items():
        first_choice.setdefault(label_seed[0], chosen)
    for seed in cfg.models.training.run_seeds():
        for job in jobs:
            training = job.settings.training.for_seed(seed)
            job = job.model_copy(update={"settings": job.settings.model_copy(update={"training": training})})
            if selections is not None:
                job = pinned_job(job, selections.get((job.label, seed), first_choice.get(job.label, {})))
            key = stable_hash(job.model, job.settings, job.features)
            distinct.setdefault(key, job)
            runs.append((job.label, seed, key))
    # Submitted together, so the worker pool trains this fold's models side by side (and beside other folds');
    # the GAT family and other late table entries are the slowest, so they go first.
    futures = {
        key: train_and_recommend_task.submit(job, cfg.relevance, dataset, fold, cfg.evaluation.n_recommendations)
        for key, job in reversed(distinct.items())
    }
    trained, seen = [], set()
    for label, seed, key in runs:
        fitted = futures[key].result()
        if (label, fitted.recommendations.digest) not in seen:
            seen.add((label, fitted.recommendations.digest))
            trained.append(fitted.model_copy(update={"model": label, "seed": seed}))
    return trained


def rerank_bases(
    cfg: ExperimentConfig, fold: FoldRef, trained: list[TrainedRef]
) -> tuple[list[TrainedRef], BaseChoice | None]:
    """The base models to rerank: `rerank.base_models`, or the model of `models.names` best on this fold's own
    validation slice (so no fold's choice rests on another fold's data, which overlaps its test set), with the
    validation NDCG@10 of each candidate (None when the bases are configured)."""
    by_label: dict[str, TrainedRef] = {}
    for t in trained:
        by_label.setdefault(t.model, t)  # a method's first seed
    names = cfg.rerank.base_models
    if names is not None:
        missing = [n for n in names if n not in by_label]
        if missing:
            raise ConfigError(f"rerank base model(s) {missing} were not trained; add them to models.names")
        return [by_label[n] for n in names], None
    rankings: dict[str, pl.DataFrame | None] = {
        n: ref.read_parquet()
        for n in cfg.models.names
        if n in by_label and (ref := by_label[n].validation_recommendations) is not None
    }
    best, scores = best_on_validation(rankings, fold.load_train(), cfg.relevance.positive_threshold)
    return [by_label[best]], BaseChoice(chosen=best, validation_ndcg10=scores)


def rerank_fold(
    cfg: ExperimentConfig,
    fold: FoldRef,
    trained: list[TrainedRef],
    semantic: SemanticResult | None,
    users: StageRef | None,
    user_vectors: StageRef | None,
    bases: list[TrainedRef] | None = None,
) -> list[RerankedRef]:
    """Each configured strategy reranks each base model's lists (one at a time: an LLM judge already runs
    `llm.concurrency` requests at once)."""
    if not cfg.rerank.strategies:
        return []
    if semantic is None or users is None or user_vectors is None:
        raise ConfigError("reranking needs the semantic layer (profiles and embeddings); set rerank.strategies=[]")
    rerank, llm = rerank_settings(cfg)
    if bases is None:
        bases = rerank_bases(cfg, fold, trained)[0]
    return [
        rerank_task(
            base,
            strategy,
            rerank.model_copy(update={"strategies": [strategy]}),
            llm,
            cfg.embedding,
            fold,
            semantic.item_profiles,
            users,
            semantic.item_embeddings,
            user_vectors,
            cfg.relevance.positive_threshold,
        )
        for base in bases
        for strategy in rerank.strategies
    ]


def evaluate_reranked(
    cfg: ExperimentConfig, dataset: DatasetRef, fold: FoldRef, bases: list[TrainedRef], reranked: list[RerankedRef]
) -> list[EvaluatedRef]:
    """Reranked methods on the users they reranked; with `rerank.max_users`, that sample only, and each base model
    on the same users as `<base>@sample`, so both are scored on exactly the same (fold, user) pairs."""
    if not reranked:
        return []
    sample = rerank_sample(cfg.rerank, dataset.n_users)
    out = [evaluate_task(r, fold, dataset, cfg.evaluation, cfg.relevance, users=sample) for r in reranked]
    if sample is not None:
        out += [
            evaluate_task(
                b.model_copy(update={"model": str(Method.parse(b.model).sampled())}),
                fold,
                dataset,
                cfg.evaluation,
                cfg.relevance,
                users=sample,
            )
            for b in bases
        ]
    return out


def small_fold_problems(cfg: ExperimentConfig, dataset: DatasetRef, folds: list[FoldRef]) -> list[str]:
    """What the folds are too small for (checked only on small data: reading every fold costs time on large)."""
    if min(dataset.n_users, dataset.n_items) >= SMALL_DATA:
        return []
    trains = any(name != "popularity" for name in cfg.models.names) or bool(cfg.ablations)
    pool = cfg.rerank.pool_size if cfg.rerank.strategies else None
    return [
        w
        for f in folds
        for w in small_fold_warnings(
            f.load(), dataset.n_items, max(cfg.evaluation.k), cfg.relevance.positive_threshold, trains, pool
        )
    ]


@task(name="run-fold", cache_policy=NO_CACHE, task_run_name="run-fold-{fold.number}")
def run_fold(cfg: ExperimentConfig, dataset: DatasetRef, fold: FoldRef, semantic: SemanticResult | None) -> FoldResult:
    # A task that calls the subflow lets the flow's task runner run folds side by side. The subflow's tasks would
    # otherwise open their transactions inside this task's, and Prefect commits nested transactions (writes their
    # cached results) only when the outermost one ends: a run killed mid-fold would lose every finished training
    # of that fold. EAGER makes each task's result durable the moment the task finishes.
    with transaction(commit_mode=CommitMode.EAGER):
        return fold_flow(cfg, dataset, fold, semantic)


# The pyright ignore below: as for fold_flow.
@flow(name="experiment", task_runner=ThreadPoolTaskRunner(max_workers=8))  # pyright: ignore[reportCallIssue, reportArgumentType]
def experiment(config: ExperimentConfig = ExperimentConfig()) -> str:  # noqa: B008  # the deployment's default
    """Run a cross-validated comparison of recommenders and write `artifacts/<run>/`; returns the headline table
    (the full tables are in the run folder's summary.md and report.md)."""
    # Training and embedding run in a pool of worker processes (threads here only wait for them).
    with worker_pool(config.workers, config.threads_per_worker):
        return run_experiment(config)


def run_experiment(given: ExperimentConfig) -> str:
    """The body of :func:`experiment` (the DAG)."""
    logger = get_run_logger()
    run_dir = Path(given.artifacts_dir) / default_run_name(given)
    config = resolve_auto(given)  # every `auto` settled once; config.json keeps the configuration as given
    preflight_llm(config)
    estimate = estimate_run(config, reuse=True)  # the bill before paying it; over llm.max_*: no call is sent
    if estimate is not None:
        logger.info("%s", estimate.markdown())
    check_caps(config, estimate)
    with spend_cap(work_dir() / "spend", config.llm.max_calls, config.llm.max_cost_usd):
        dataset = prepare_dataset_task(config.dataset)
        logger.info("dataset %s: %d users, %d items", dataset.name, dataset.n_users, dataset.n_items)
        semantic = semantic_items(config, dataset) if config.semantic else None
        folds = split_dataset_task(dataset, config.split)
        for warning in small_fold_problems(config, dataset, folds):
            logger.warning("%s", warning)

        parallel = max(1, min(config.parallel_folds, len(folds)))
        with fold_task_runner(config, parallel) as runner:  # threads, or a Dask cluster (config.task_runner)
            futures = [
                runner.submit(run_fold, {"cfg": config, "dataset": dataset, "fold": f, "semantic": semantic})
                for f in folds
            ]
            results = [f.result() for f in futures]

    summary = report_task(
        run_settings(config, given.model_dump_json(indent=2)),
        dataset,
        results,
        semantic,
        run_dir,
        estimate.to_dict() if estimate is not None else None,
    )
    publish_run_artifacts(run_dir, summary)
    logger.info("results written to %s", run_dir)
    return summary.headline
