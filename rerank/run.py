"""Rerank a recommender's lists with one strategy and judge: plain functions, no Prefect.

    judge = SemanticJudge(inputs)                    # or LLMJudge(gateway, inputs)
    result = rerank_recommendations(recs, "bst", judge, inputs, RerankConfig(base_model="lightgcn"))
    result.recommendations   # user_idx, item_idx, rank, score: top pool_size reordered, the rest unchanged
    result.explanations      # user_idx, item_idx, rank, explanation (the reranked positions)
    result.cost              # users, requests, calls, prompt/completion tokens, cache hits, repairs, fallbacks

`score` holds the fused score (on [0, 1]) at reranked positions and the base model's score below them; `rank` is
what orders a list.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from e2ep.errors import ConfigError, DataError
from e2ep.llm import LLMConfig, LLMGateway
from e2ep.sampling import user_sample
from rerank.config import RerankConfig
from rerank.fusion import fuse, fused_order
from rerank.inputs import RerankInputs, UserContext
from rerank.judges import Judge, LLMJudge, SemanticJudge
from rerank.strategies import STRATEGIES

log = logging.getLogger("e2ep.rerank")
REC_SCHEMA = {"user_idx": pl.Int32, "item_idx": pl.Int32, "rank": pl.Int32, "score": pl.Float32}
EXPLANATION_SCHEMA = {"user_idx": pl.Int32, "item_idx": pl.Int32, "rank": pl.Int32, "explanation": pl.String}


@dataclass(frozen=True)
class RerankResult:
    recommendations: pl.DataFrame
    explanations: pl.DataFrame
    cost: dict[str, Any]


@dataclass(frozen=True)
class UserResult:
    user_idx: int
    order: list[int]
    fused: list[float]
    explanations: dict[int, str]


def resolve_judge(cfg: RerankConfig, llm: LLMConfig | None) -> RerankConfig:
    """`auto` becomes `llm` when a model is configured, else `semantic`. The experiment flow resolves it at its entry
    (flows.config.resolve_auto); this stays for stand-alone callers of `make_judge` (app/bench_rerank.py)."""
    if cfg.judge != "auto":
        return cfg
    return cfg.model_copy(update={"judge": "llm" if llm is not None and llm.resolved_model() else "semantic"})


def make_judge(cfg: RerankConfig, inputs: RerankInputs, llm: LLMConfig | None, stage: str) -> Judge:
    """The configured judge; the LLM one is checked (model, key, cache folder) before any work."""
    if resolve_judge(cfg, llm).judge == "semantic":
        return SemanticJudge(inputs, cfg.dislike_weight, cfg.semantic_signal, cfg.liked_neighbours)
    gateway = LLMGateway.from_config(llm, required=True)
    if gateway is None:  # pragma: no cover - required=True raises instead
        raise ConfigError("rerank.judge 'llm' needs an LLM")
    gateway.preflight()
    return LLMJudge(gateway, inputs, stage=stage, recent=cfg.recent_interactions)


def rerank_sample(cfg: RerankConfig, n_users: int) -> list[int] | None:
    """The users reranked when `cfg.max_users` is set (a seeded sample of all `n_users`), else None (all)."""
    return user_sample(n_users, cfg.max_users, cfg.seed)


def user_pools(recs: pl.DataFrame, pool_size: int) -> dict[int, pl.DataFrame]:
    """Each user's list sorted by rank (a repeated item keeps its best rank)."""
    missing = {"user_idx", "item_idx", "rank", "score"} - set(recs.columns)
    if missing:
        raise DataError(f"recommendations need columns user_idx, item_idx, rank, score; missing {sorted(missing)}")
    ordered = recs.sort("user_idx", "rank").unique(["user_idx", "item_idx"], keep="first", maintain_order=True)
    return {int(k[0]): g for k, g in ordered.group_by("user_idx", maintain_order=True)}


def rerank_user(strategy: str, judge: Judge, ctx: UserContext, cfg: RerankConfig) -> UserResult:
    # A zero judge weight (fusion chosen on validation may pick it) leaves the base order: nothing to ask.
    judged = STRATEGIES[strategy](judge, ctx, cfg).scores if cfg.judge_weight > 0 else np.zeros(len(ctx.candidates))
    fused = fuse(ctx.base_scores, judged, cfg.judge_weight, cfg.base_weight, cfg.normalisation)
    order = fused_order(ctx.candidates, fused)
    by_item = dict(zip(ctx.candidates, fused.tolist(), strict=True))
    explanations = judge.explain(ctx, order) if cfg.explanations else {}
    return UserResult(ctx.user_idx, order, [by_item[i] for i in order], explanations)


def rerank_recommendations(
    recs: pl.DataFrame, strategy: str, judge: Judge, inputs: RerankInputs, cfg: RerankConfig, workers: int = 1
) -> RerankResult:
    """Rerank every user's top `cfg.pool_size` with `strategy`. With `cfg.max_users`, only the users of the seeded
    sample (`rerank_sample`: the same for every strategy and fold) are reranked and only their lists returned, so
    they are evaluated on exactly those users."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown rerank strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    started = time.perf_counter()
    pools = user_pools(recs, cfg.pool_size)
    sample = rerank_sample(cfg, len(inputs.user_vectors))
    users = sorted(pools) if sample is None else [u for u in sample if u in pools]
    if sample is not None:
        pools = {u: pools[u] for u in users}
    contexts = []
    for user in users:
        head = pools[user].head(cfg.pool_size)
        contexts.append(UserContext(user, head["item_idx"].to_list(), head["score"].cast(pl.Float64).to_list()))
    n_items = len(inputs.item_vectors)
    if contexts and max(max(c.candidates) for c in contexts) >= n_items:
        raise DataError(f"recommended item index beyond the {n_items} item embeddings")

    def run(ctx: UserContext) -> UserResult:
        return rerank_user(strategy, judge, ctx, cfg)

    if judge.parallel and workers > 1:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="e2ep-rerank")
        try:
            results = list(pool.map(run, contexts))
        finally:  # a stopped stage or a stop request: drop the users not started, wait for no call in flight
            pool.shutdown(wait=False, cancel_futures=True)
    else:
        results = [run(c) for c in contexts]

    done = {r.user_idx: r for r in results}
    frames, notes = [], []
    for user, frame in pools.items():
        result = done.get(user)
        if result is None:
            frames.append(frame.select("user_idx", "item_idx", "rank", "score"))
            continue
        rest = frame.slice(len(result.order))
        n = len(result.order)
        frames.append(
            pl.DataFrame(
                {
                    "user_idx": [user] * (n + rest.height),
                    "item_idx": result.order + rest["item_idx"].to_list(),
                    "rank": list(range(1, n + rest.height + 1)),
                    "score": result.fused + rest["score"].cast(pl.Float64).to_list(),
                },
                schema=REC_SCHEMA,
            )
        )
        if result.explanations:
            notes.append(
                pl.DataFrame(
                    {
                        "user_idx": [user] * n,
                        "item_idx": result.order,
                        "rank": list(range(1, n + 1)),
                        "explanation": [result.explanations[i] for i in result.order],
                    },
                    schema=EXPLANATION_SCHEMA,
                )
            )
    out = pl.concat([f.cast(REC_SCHEMA) for f in frames]).sort("user_idx", "rank") if frames else recs
    explanations = pl.concat(notes) if notes else pl.DataFrame(schema=EXPLANATION_SCHEMA)
    cost = judge.cost()
    cost.users = len(contexts)
    seconds = time.perf_counter() - started
    log.info(
        "rerank %s (%s judge): %d users in %.1f s, %s", strategy, judge.kind, len(contexts), seconds, cost.as_dict()
    )
    return RerankResult(out, explanations, {**cost.as_dict(), "judge": judge.kind, "seconds": round(seconds, 2)})
