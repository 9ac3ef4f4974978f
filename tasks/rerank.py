"""Reranking stage: one strategy reranks one base model's lists on one fold (cached; LLM answers memoised)."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import get_run_logger, task

from e2ep.config import ExperimentConfig
from e2ep.errors import ConfigError
from e2ep.llm import LLMConfig, check_fallback_share, report_retried
from e2ep.profiles import EmbeddingConfig
from e2ep.runtime import work_dir
from e2ep.store import FileRef, stable_hash, write_parquet
from rerank.config import RerankConfig
from rerank.inputs import build_inputs
from rerank.run import make_judge, rerank_recommendations, resolve_judge
from tasks.caching import code_and_inputs, retry_unless_user_error
from tasks.data import FoldRef
from tasks.semantic import StageRef, resolve_semantic_settings
from tasks.train import TrainedRef


class RerankedRef(TrainedRef, frozen=True):
    """A reranked method (`<base>+<strategy>`): evaluated like any trained model."""

    explanations: FileRef
    cost: dict[str, Any]


def resolve_rerank_settings(cfg: ExperimentConfig) -> tuple[RerankConfig, LLMConfig | None]:
    """The rerank settings with `auto` settled, and the LLM settings only when the LLM judges (so a changed model
    never invalidates semantic-judge results)."""
    llm = resolve_semantic_settings(cfg)[1]
    rerank = resolve_judge(cfg.rerank, llm)
    return rerank, (llm if rerank.judge == "llm" else None)


def rerank_trained(trained: TrainedRef, strategy: str, cfg: RerankConfig, llm: LLMConfig | None,
                   embedding: EmbeddingConfig, fold: FoldRef, item_profiles: StageRef, user_profiles: StageRef,
                   item_embeddings: StageRef, user_embeddings: StageRef, min_rating: float = 4.0) -> RerankedRef:
    if trained.model != cfg.base_model:
        raise ConfigError(f"rerank.base_model is {cfg.base_model!r} but the lists given are {trained.model!r}'s")
    recs = trained.recommendations.read_parquet()
    semantic = resolve_judge(cfg, llm).judge == "semantic"
    users = set(recs["user_idx"].unique().to_list())
    inputs = build_inputs(item_profiles.file.read_parquet(), user_profiles.file.read_parquet(),
                          np.load(item_embeddings.file.path), np.load(user_embeddings.file.path), fold.load().train,
                          min_rating, embedding, dislikes=semantic and cfg.dislike_weight > 0,
                          items_used=set(recs["item_idx"].unique().to_list()), users_used=users)
    judge = make_judge(cfg, inputs, llm, stage=f"rerank_{strategy}")
    workers = llm.concurrency if llm is not None else 1
    result = rerank_recommendations(recs, strategy, judge, inputs, cfg, workers=workers)
    gateway = getattr(judge, "gateway", None)
    if gateway is not None:
        gateway.close()
        label = f"rerank {cfg.method(strategy)} fold {fold.number}"
        report_retried(label, gateway.usage_summary()["total"]["retried_failures"])
        check_fallback_share(label, result.cost["fallbacks"], result.cost["requests"], gateway.config,
                             f"{cfg.base_model}'s order")
    method = cfg.method(strategy)
    key = stable_hash(trained.recommendations.digest, strategy, cfg, llm, embedding, fold.digest,
                      item_profiles.file.digest, user_profiles.file.digest, item_embeddings.file.digest,
                      user_embeddings.file.digest, min_rating)
    root = work_dir() / "reranked"
    return RerankedRef(
        model=method, fold=trained.fold,
        recommendations=write_parquet(result.recommendations, root / f"{method}-fold{fold.number}-{key}.parquet"),
        explanations=write_parquet(result.explanations,
                                   root / f"{method}-fold{fold.number}-{key}-explanations.parquet"),
        cost=result.cost, log={"seconds": result.cost["seconds"]},
    )


@task(name="rerank", cache_policy=code_and_inputs("rerank", "e2ep.llm"), persist_result=True, retries=1,
      retry_delay_seconds=10, retry_condition_fn=retry_unless_user_error, task_run_name="rerank-{trained.model}+{strategy}-fold{fold.number}")
def rerank_task(trained: TrainedRef, strategy: str, cfg: RerankConfig, llm: LLMConfig | None,
                embedding: EmbeddingConfig, fold: FoldRef, item_profiles: StageRef, user_profiles: StageRef,
                item_embeddings: StageRef, user_embeddings: StageRef, min_rating: float = 4.0) -> RerankedRef:
    ref = rerank_trained(trained, strategy, cfg, llm, embedding, fold, item_profiles, user_profiles,
                         item_embeddings, user_embeddings, min_rating)
    cost = ref.cost
    get_run_logger().info("fold %d %s: %d users, %d judge requests, %d LLM calls, %d tokens, %d fallbacks, %.1f s",
                          fold.number, ref.model, cost["users"], cost["requests"], cost["calls"],
                          cost["prompt_tokens"] + cost["completion_tokens"], cost["fallbacks"], cost["seconds"])
    return ref
