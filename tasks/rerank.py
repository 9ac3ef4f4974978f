"""Reranking stage: one strategy reranks one base model's lists on one fold (cached; LLM answers memoised)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from prefect import get_run_logger, task

from e2ep.llm import LLMConfig, check_fallback_share, report_retried
from e2ep.runtime import work_dir
from e2ep.store import FileRef, stable_hash, write_parquet
from rerank.config import RerankConfig
from rerank.inputs import build_inputs
from rerank.method import Method
from rerank.run import make_judge, rerank_recommendations
from rerank.selection import FusionChoice, select_fusion, with_fusion
from semantic.profiles import EmbeddingConfig
from tasks.caching import code_and_inputs, retry_unless_user_error
from tasks.data import FoldRef
from tasks.semantic import StageRef
from tasks.train import TrainedRef


class RerankedRef(TrainedRef, frozen=True):
    """A reranked method (`<base>+<strategy>`): evaluated like any trained model. `fusion`: the weights used on
    test and how they were chosen; `validation_cost`: what choosing them cost."""

    explanations: FileRef
    cost: dict[str, Any]
    fusion: FusionChoice
    base: str = ""
    validation_cost: dict[str, Any] = {}


def rerank_trained(
    trained: TrainedRef,
    strategy: str,
    cfg: RerankConfig,
    llm: LLMConfig | None,
    embedding: EmbeddingConfig,
    fold: FoldRef,
    item_profiles: StageRef,
    user_profiles: StageRef,
    item_embeddings: StageRef,
    user_embeddings: StageRef,
    min_rating: float = 4.0,
) -> RerankedRef:
    """Choose the fusion on the fold's validation slice (or take the paper's), then rerank the test lists with it.
    Only the fold's training side is read here; its test ratings are for evaluation alone."""
    recs = trained.recommendations.read_parquet()
    val_recs = None
    if cfg.fusion == "validation" and trained.validation_recommendations is not None:
        val_recs = trained.validation_recommendations.read_parquet().filter(pl.col("rank") <= cfg.pool_size)
    train = fold.load_train()
    semantic = cfg.judge == "semantic"  # `cfg` comes resolved (flows.config.rerank_settings)
    pooled = recs if val_recs is None else pl.concat([recs.select(val_recs.columns), val_recs])
    users = set(pooled["user_idx"].unique().to_list())
    inputs = build_inputs(
        item_profiles.file.read_parquet(),
        user_profiles.file.read_parquet(),
        np.load(item_embeddings.file.path),
        np.load(user_embeddings.file.path),
        train,
        min_rating,
        embedding,
        dislikes=semantic and cfg.semantic_signal == "profile" and cfg.dislike_weight > 0,
        items_used=set(pooled["item_idx"].unique().to_list()),
        users_used=users,
    )
    workers = llm.concurrency if llm is not None else 1
    choice, validation_cost = select_fusion(val_recs, train, strategy, inputs, cfg, llm, min_rating, workers)
    fused_cfg = with_fusion(cfg, choice)
    judge = make_judge(fused_cfg, inputs, llm, stage=f"rerank_{strategy}")
    result = rerank_recommendations(recs, strategy, judge, inputs, fused_cfg, workers=workers)
    gateway = getattr(judge, "gateway", None)
    if gateway is not None:
        gateway.close()
        label = f"rerank {Method.reranked(trained.model, strategy)} fold {fold.number}"
        report_retried(label, gateway.usage_summary()["total"]["retried_failures"])
        check_fallback_share(
            label, result.cost["fallbacks"], result.cost["requests"], gateway.config, f"{trained.model}'s order"
        )
    method = str(Method.reranked(trained.model, strategy))
    key = stable_hash(
        trained.recommendations.digest,
        trained.validation_recommendations,
        strategy,
        cfg,
        llm,
        embedding,
        fold.digest,
        item_profiles.file.digest,
        user_profiles.file.digest,
        item_embeddings.file.digest,
        user_embeddings.file.digest,
        min_rating,
    )
    root = work_dir() / "reranked"
    return RerankedRef(
        model=method,
        fold=trained.fold,
        seed=trained.seed,
        base=trained.model,
        fusion=choice,
        validation_cost=validation_cost,
        recommendations=write_parquet(result.recommendations, root / f"{method}-fold{fold.number}-{key}.parquet"),
        explanations=write_parquet(
            result.explanations, root / f"{method}-fold{fold.number}-{key}-explanations.parquet"
        ),
        cost=result.cost,
        log={"seconds": result.cost["seconds"]},
    )


@task(
    name="rerank",
    cache_policy=code_and_inputs("tasks.rerank"),
    persist_result=True,
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_unless_user_error,
    task_run_name="rerank-{trained.model}+{strategy}-fold{fold.number}",
)
def rerank_task(
    trained: TrainedRef,
    strategy: str,
    cfg: RerankConfig,
    llm: LLMConfig | None,
    embedding: EmbeddingConfig,
    fold: FoldRef,
    item_profiles: StageRef,
    user_profiles: StageRef,
    item_embeddings: StageRef,
    user_embeddings: StageRef,
    min_rating: float = 4.0,
) -> RerankedRef:
    ref = rerank_trained(
        trained,
        strategy,
        cfg,
        llm,
        embedding,
        fold,
        item_profiles,
        user_profiles,
        item_embeddings,
        user_embeddings,
        min_rating,
    )
    cost, fusion = ref.cost, ref.fusion
    logger = get_run_logger()
    logger.info(
        "fold %d %s: %d users, %d judge requests, %d LLM calls, %d tokens, %d fallbacks, %.1f s",
        fold.number,
        ref.model,
        cost["users"],
        cost["requests"],
        cost["calls"],
        cost["prompt_tokens"] + cost["completion_tokens"],
        cost["fallbacks"],
        cost["seconds"],
    )
    logger.info(
        "fold %d %s: fusion %s, judge weight %g (%s); validation NDCG@10 %s vs base %s on %d users",
        fold.number,
        ref.model,
        fusion.source,
        fusion.judge_weight,
        fusion.normalisation,
        fusion.validation_ndcg,
        fusion.base_ndcg,
        fusion.users,
    )
    return ref
