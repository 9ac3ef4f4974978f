"""Semantic stages: item metadata → item profiles → per-fold user profiles → embeddings.

Each writes a content-addressed file and returns a small reference. LLM calls are memoised by the gateway
itself (a crash loses no completed call); these tasks add Prefect caching on top, so an unchanged stage is
skipped without even reading the LLM cache.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from prefect import get_run_logger, task
from pydantic import BaseModel

from e2ep.llm import LLMConfig, LLMGateway, check_fallback_share, report_retried
from e2ep.pool import run_cpu_bound, run_isolated
from e2ep.runtime import work_dir
from e2ep.store import FileRef, atomic_write, file_digest, stable_hash, write_parquet
from flows.config import AblationConfig, ExperimentConfig, rerank_settings, semantic_settings
from semantic.embed import embed_frame_counts
from semantic.metadata import MetadataConfig, enrich_items
from semantic.profiles import EmbeddingConfig, ProfileResult, ProfilesConfig, item_profiles, user_profiles
from tasks.caching import code_and_inputs, retry_unless_user_error
from tasks.data import DatasetRef, FoldRef


class StageRef(BaseModel, frozen=True):
    """A stage's output file plus what it reports (counts by source, LLM usage)."""

    file: FileRef
    report: dict[str, Any]


MAIN_VARIANT = "main"


def backend_of(ablation: AblationConfig, main: ProfilesConfig) -> str:
    """The profile backend an ablation's item side comes from (`precomputed-items`: the authors' items)."""
    if ablation.features == "profiles":
        return main.backend
    return "precomputed" if ablation.features == "precomputed-items" else ablation.features


def variant_of(ablation: AblationConfig, main: ProfilesConfig) -> str | None:
    """Which profile variant feeds an ablation: `main`, `<backend>-<representation>`, or None (no text)."""
    if ablation.features == "none":
        return None
    backend = backend_of(ablation, main)
    representation = ablation.representation or main.representation
    if (backend, representation) == (main.backend, main.representation):
        return MAIN_VARIANT
    return f"{backend}-{representation}"


def profile_variants(cfg: ExperimentConfig) -> tuple[dict[str, ProfilesConfig], LLMConfig]:
    """Every profile setting the run embeds: the run's own (`main`) plus those its ablations ask for."""
    main, llm = semantic_settings(cfg)
    variants = {MAIN_VARIANT: main}
    for ablation in cfg.ablations:
        key = variant_of(ablation, main)
        if key is not None and key not in variants:
            backend = backend_of(ablation, main)
            variants[key] = main.model_copy(
                update={"backend": backend, "representation": ablation.representation or main.representation}
            )
    return variants, llm


def gateway_for(profiles: ProfilesConfig, llm: LLMConfig) -> LLMGateway | None:
    """The LLM gateway when profiles are LLM-written, checked before any work (missing key, unknown model)."""
    if profiles.backend != "llm":
        return None
    gateway = LLMGateway.from_config(llm, required=True)
    gateway.preflight()
    return gateway


def preflight_llm(cfg: ExperimentConfig) -> None:
    """Report a missing API key or unknown model, and (one tiny real request, `llm.preflight_call`) a key, model
    or endpoint the provider refuses or cannot be reached at, before any work starts (no-op when no stage calls an
    LLM: neither the profiles of any variant nor the reranking judge)."""
    if not cfg.semantic:
        return
    variants, llm = profile_variants(cfg)
    judge_llm = bool(cfg.rerank.strategies) and rerank_settings(cfg)[1] is not None
    if judge_llm or any(p.backend == "llm" for p in variants.values()):
        gateway = LLMGateway.from_config(llm, required=True)
        gateway.preflight()
        gateway.close()


def build_item_metadata(dataset: DatasetRef, cfg: MetadataConfig) -> StageRef:
    result = enrich_items(dataset.load().items, cfg)
    path = work_dir() / "semantic" / f"items-metadata-{stable_hash(dataset.digest, cfg)}.parquet"
    return StageRef(file=write_parquet(result.items, path), report={"summary": result.report.summary()})


def _profiles_ref(result: ProfileResult, name: str, gateway: LLMGateway | None, *key: Any) -> StageRef:
    """The stage's file and report; with an LLM, its share of template fallbacks is said on the console and one
    above `llm.max_fallback_share` fails the stage (the answers and failures stay memoised)."""
    path = work_dir() / "semantic" / f"{name}-{stable_hash(*key)}.parquet"
    report: dict[str, Any] = {"counts": result.counts}
    if gateway is not None:
        report["llm_usage"] = gateway.usage_summary()
        gateway.close()
        report_retried(name, report["llm_usage"]["total"]["retried_failures"])
        fallbacks = result.counts.get("template_fallback", 0)
        check_fallback_share(
            name, fallbacks, result.counts.get("llm", 0) + fallbacks, gateway.config, "template profiles"
        )
    return StageRef(file=write_parquet(result.frame, path), report=report)


def build_item_profiles(dataset: DatasetRef, metadata: StageRef, profiles: ProfilesConfig, llm: LLMConfig) -> StageRef:
    gateway = gateway_for(profiles, llm)
    result = item_profiles(metadata.file.read_parquet(), profiles, gateway=gateway, id_map=dataset.load().items)
    return _profiles_ref(result, "item-profiles", gateway, metadata.file.digest, profiles, llm)


def build_user_profiles(
    dataset: DatasetRef, fold: FoldRef, metadata: StageRef, profiles: ProfilesConfig, llm: LLMConfig
) -> StageRef:
    gateway = gateway_for(profiles, llm)
    data = dataset.load()
    result = user_profiles(
        fold.load(), metadata.file.read_parquet(), profiles, n_users=data.n_users, gateway=gateway, id_map=data.users
    )
    return _profiles_ref(
        result, f"user-profiles-fold{fold.number}", gateway, fold.digest, metadata.file.digest, profiles, llm
    )


def embed_profiles(profiles: StageRef, id_col: str, n: int, cfg: EmbeddingConfig) -> StageRef:
    """`[n, 384]` float32 matrix aligned with node ids, saved as .npy (rows without a profile are zero). The report
    has the counts and the stage's own `seconds` (loading the encoder included; starting its process and waiting
    for a worker not)."""
    started = time.perf_counter()
    vectors, counts = embed_frame_counts(profiles.file.read_parquet(), id_col, n, cfg)
    path = work_dir() / "semantic" / f"embeddings-{stable_hash(profiles.file.digest, cfg)}.npy"
    atomic_write(path, lambda tmp: np.save(tmp.open("wb"), vectors.numpy().astype(np.float32)))
    return StageRef(
        file=FileRef(path=str(path), digest=file_digest(path)),
        report={"counts": counts, "seconds": round(time.perf_counter() - started, 1)},
    )


def _logged(stage: str, ref: StageRef) -> StageRef:
    get_run_logger().info("%s: %s", stage, {k: v for k, v in ref.report.items() if k != "llm_usage"})
    return ref


@task(name="item-metadata", cache_policy=code_and_inputs("semantic.metadata"), persist_result=True, retries=1)
def item_metadata_task(dataset: DatasetRef, cfg: MetadataConfig) -> StageRef:
    return _logged("item metadata", build_item_metadata(dataset, cfg))


@task(
    name="item-profiles",
    cache_policy=code_and_inputs("semantic.profiles", "e2ep.llm"),
    persist_result=True,
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_unless_user_error,
)
def item_profiles_task(dataset: DatasetRef, metadata: StageRef, profiles: ProfilesConfig, llm: LLMConfig) -> StageRef:
    return _logged("item profiles", build_item_profiles(dataset, metadata, profiles, llm))


@task(
    name="user-profiles",
    cache_policy=code_and_inputs("semantic.profiles", "e2ep.llm"),
    persist_result=True,
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_unless_user_error,
    task_run_name="user-profiles-fold{fold.number}",
)
def user_profiles_task(
    dataset: DatasetRef, fold: FoldRef, metadata: StageRef, profiles: ProfilesConfig, llm: LLMConfig
) -> StageRef:
    return _logged(f"fold {fold.number} user profiles", build_user_profiles(dataset, fold, metadata, profiles, llm))


SMALL_EMBEDDING_STAGE = 256
"""Rows (items or users) up to which an embedding stage runs in the worker pool rather than a process of its own;
ML-100K's 943 users and 1,682 items are above it."""


@task(name="embed", cache_policy=code_and_inputs("semantic.embed"), persist_result=True, task_run_name="embed-{id_col}")
def embed_task(profiles: StageRef, id_col: str, n: int, cfg: EmbeddingConfig) -> StageRef:
    # In a process of its own that exits afterwards: a long-lived worker would keep the encoder's ~600 MB. A small
    # stage is a pooled job instead: a fresh process spends ~8 s importing torch and sentence-transformers per
    # stage, while the heap it would give back is small (the worker keeps the loaded encoder for the next stage).
    run = run_isolated if n > SMALL_EMBEDDING_STAGE else run_cpu_bound
    return _logged(f"{id_col} embeddings", run(embed_profiles, profiles, id_col, n, cfg))
