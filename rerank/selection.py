"""Choices made on a fold's validation slice, never on its test data: the rerankers' base model and their fusion.

Validation pools come from the base model's validation ranking (`TrainedRef.validation_recommendations`: top-n
with only the fit part of training excluded), so a user's held-out validation items compete with every unseen item,
as test items do in the test lists. Relevant = validation rating >= the positive threshold. Score: NDCG@10 of the
fused top of each pool (binary gains, ideal DCG over min(relevant, k)), averaged over users.

    users = validation_sample(validation, cfg, threshold)           # seeded sample, `rerank.validation_users`
    contexts = validation_contexts(val_recs, users, cfg.pool_size)
    verdicts = judge_verdicts(strategy, judge, contexts, cfg)        # the judge's cost: counted by its own stage
    choice = choose_fusion(contexts, verdicts, relevant_items(validation, threshold), cfg)

The judge's verdict does not depend on the fusion, so each user's pool is judged once and every (weight,
normalisation) of the grid is scored from the same verdicts: the judge's cost is `validation_users` pools per
strategy, whatever the grid size. The best point must beat the base order significantly on those users
(`rerank.fusion_alpha`), else the reranker keeps the base order: a gain too small to see on validation is not worth
the risk of a loss on test.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import polars as pl
from pydantic import BaseModel
from scipy.stats import wilcoxon

from e2ep.errors import DataError
from e2ep.llm import LLMConfig
from rerank.config import RerankConfig
from rerank.fusion import fuse, fused_order
from rerank.inputs import RerankInputs, UserContext, liked_items
from rerank.judges import Judge
from rerank.strategies import STRATEGIES, max_bst_comparisons

SELECTION_K = 10
_SAMPLE_STREAM = 7_919  # seed salt of the validation user sample


@dataclass(frozen=True)
class FusionChoice:
    """The fusion a reranker uses on test, and what it rests on."""

    judge_weight: float
    normalisation: str
    source: str
    """`validation` (chosen) or `paper` (fixed)."""
    users: int = 0
    validation_ndcg: float | None = None
    base_ndcg: float | None = None
    grid: dict[str, float] = field(default_factory=dict)
    """`<normalisation>@<judge weight>` -> validation NDCG@10."""
    best_p_value: float | None = None
    """One-sided p-value of the best grid point's gain over the base order (None: the best was w = 0)."""

    @property
    def base_weight(self) -> float:
        return 1.0 - self.judge_weight

    def as_dict(self) -> dict:
        return asdict(self)


def relevant_items(validation: pl.DataFrame, threshold: float) -> dict[int, set[int]]:
    """Per user, the validation items rated at or above `threshold`."""
    frame = validation.filter(pl.col("rating") >= threshold).select("user_idx", "item_idx")
    out: dict[int, set[int]] = {}
    for user, item in frame.iter_rows():
        out.setdefault(int(user), set()).add(int(item))
    return out


def validation_sample(validation: pl.DataFrame, cfg: RerankConfig, threshold: float) -> list[int]:
    """Users with a relevant validation item; a seeded sample of `cfg.validation_users` of them (sorted)."""
    users = np.array(sorted(relevant_items(validation, threshold)), dtype=np.int64)
    n = cfg.validation_users
    if n is None or n >= len(users):
        return users.tolist()
    rng = np.random.default_rng([cfg.seed % 2**63, _SAMPLE_STREAM])
    return sorted(rng.choice(users, size=n, replace=False).tolist())


def validation_users_per_fold(cfg: RerankConfig, eligible: int) -> int:
    """Validation users whose pools the judge scores per (fold, base, strategy), given `eligible` users with a
    relevant validation item (0 with `paper` fusion)."""
    if cfg.fusion != "validation":
        return 0
    return eligible if cfg.validation_users is None else min(cfg.validation_users, eligible)


def requests_per_user(strategy: str, cfg: RerankConfig) -> int:
    """Judge requests one pool of `cfg.pool_size` costs at most with `strategy` (explanations not included: fusion
    selection asks for none)."""
    n = cfg.pool_size
    if strategy == "prompt":
        return 1
    if strategy == "bst":
        return max_bst_comparisons(n) * (2 if cfg.bst_both_orders else 1)
    if strategy == "relevancy":
        return cfg.relevancy_appearances * math.ceil(n / cfg.relevancy_batch)
    if strategy == "batch":
        # Passes settle `window - stride` positions each; a pass judges at most ceil((n - window) / stride) + 1.
        settle, total, top = cfg.batch_window - cfg.batch_stride, 0, 0
        while n - top > 1:
            total += math.ceil(max(n - top - cfg.batch_window, 0) / cfg.batch_stride) + 1
            if n - top <= cfg.batch_window:
                break
            top += settle
        return total
    raise ValueError(f"unknown rerank strategy {strategy!r}")


def validation_requests(cfg: RerankConfig, eligible: int, n_bases: int = 1) -> int:
    """Upper bound on the judge requests (LLM calls before memoisation, repairs not included) fusion selection makes
    on one fold: sampled users x pool requests, per base model and strategy."""
    users = validation_users_per_fold(cfg, eligible)
    return n_bases * users * sum(requests_per_user(s, cfg) for s in cfg.strategies)


def validation_contexts(val_recs: pl.DataFrame, users: Sequence[int], pool_size: int) -> list[UserContext]:
    """Each sampled user's pool: the top `pool_size` of the validation ranking, in the base model's order."""
    wanted = val_recs.filter(pl.col("user_idx").is_in(list(users))).sort("user_idx", "rank")
    out = []
    for (user,), group in wanted.group_by("user_idx", maintain_order=True):
        head = group.head(pool_size)
        out.append(UserContext(int(user), head["item_idx"].to_list(), head["score"].cast(pl.Float64).to_list()))
    return out


def judge_verdicts(
    strategy: str, judge: Judge, contexts: Sequence[UserContext], cfg: RerankConfig, workers: int = 1
) -> dict[int, np.ndarray]:
    """The judge's scores of each pool (aligned with `ctx.candidates`)."""

    def run(ctx: UserContext) -> np.ndarray:
        return STRATEGIES[strategy](judge, ctx, cfg).scores

    if judge.parallel and workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="e2ep-select") as pool:
            scores = list(pool.map(run, contexts))
    else:
        scores = [run(c) for c in contexts]
    return {c.user_idx: s for c, s in zip(contexts, scores, strict=True)}


def ndcg_at(order: Sequence[int], relevant: set[int], k: int = SELECTION_K) -> float:
    """Binary-gain NDCG@k of one list (the evaluation's definition: ideal DCG over min(|relevant|, k))."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(r + 2) for r, item in enumerate(order[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
    return dcg / ideal


def ranking_ndcg(recs: pl.DataFrame, relevant: dict[int, set[int]], k: int = SELECTION_K) -> float:
    """Mean NDCG@k over the users of `relevant` of a ranking frame (`user_idx, item_idx, rank`); a user with no
    list scores 0."""
    if not relevant:
        return float("nan")
    lists = {
        int(u): g["item_idx"].to_list()
        for (u,), g in recs.filter(pl.col("rank") <= k)
        .sort("user_idx", "rank")
        .group_by("user_idx", maintain_order=True)
    }
    return float(np.mean([ndcg_at(lists.get(u, []), items, k) for u, items in relevant.items()]))


def choose_fusion(
    contexts: Sequence[UserContext], verdicts: dict[int, np.ndarray], relevant: dict[int, set[int]], cfg: RerankConfig
) -> FusionChoice:
    """The grid point with the best mean validation NDCG@10 (ties: the smaller judge weight, then the
    normalisation listed first), kept only if its per-user gain over the base order (w = 0) is significant at
    `cfg.fusion_alpha` (one-sided Wilcoxon signed-rank); otherwise w = 0."""
    grid: dict[str, float] = {}
    per_user: dict[tuple[float, str], np.ndarray] = {}
    best: tuple[float, float, int] | None = None
    choice = (0.0, cfg.fusion_normalisations[0])
    for weight in cfg.fusion_grid:
        for rank_n, how in enumerate(cfg.fusion_normalisations):
            values = np.array(
                [
                    ndcg_at(
                        fused_order(c.candidates, fuse(c.base_scores, verdicts[c.user_idx], weight, 1.0 - weight, how)),
                        relevant.get(c.user_idx, set()),
                    )
                    for c in contexts
                ]
            )
            per_user[(weight, how)] = values
            score = float(values.mean()) if len(values) else 0.0
            grid[f"{how}@{weight:g}"] = round(score, 6)
            key = (round(score, 12), -weight, -rank_n)
            if best is None or key > best:
                best, choice = key, (weight, how)
    base_key = (0.0, cfg.fusion_normalisations[0])
    p_value = gain_p_value(per_user[choice] - per_user[base_key]) if choice[0] > 0 else None
    if p_value is not None and p_value >= cfg.fusion_alpha:
        choice = base_key
    return FusionChoice(
        judge_weight=choice[0],
        normalisation=choice[1],
        source="validation",
        users=len(contexts),
        validation_ndcg=grid[f"{choice[1]}@{choice[0]:g}"],
        base_ndcg=grid[f"{base_key[1]}@0"],
        grid=grid,
        best_p_value=p_value,
    )


def gain_p_value(diffs: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p-value that the per-user differences are positive (1 when all are 0)."""
    if not np.any(diffs):
        return 1.0
    return float(wilcoxon(diffs, alternative="greater").pvalue)  # pyright: ignore[reportAttributeAccessIssue]  # scipy


def paper_fusion(cfg: RerankConfig) -> FusionChoice:
    total = cfg.judge_weight + cfg.base_weight
    return FusionChoice(judge_weight=cfg.judge_weight / total, normalisation=cfg.normalisation, source="paper")


def with_fusion(cfg: RerankConfig, choice: FusionChoice) -> RerankConfig:
    """The settings the test-time reranking runs with."""
    return cfg.model_copy(
        update={
            "judge_weight": choice.judge_weight,
            "base_weight": choice.base_weight,
            "normalisation": choice.normalisation,
        }
    )


def select_fusion(
    val_recs: pl.DataFrame | None,
    train: pl.DataFrame,
    strategy: str,
    inputs: RerankInputs,
    cfg: RerankConfig,
    llm: LLMConfig | None = None,
    min_rating: float = 4.0,
    workers: int = 1,
) -> tuple[FusionChoice, dict]:
    """The fusion for one (fold, base, strategy) and the cost of choosing it (`{}` for `paper` fusion).

    Reads the fold's training side only (`train` with its `is_validation` flag): pools from the base model's
    validation ranking `val_recs`, relevance from the validation slice, and the judge's knowledge of each user's
    liked movies from the fit part (the validation items are what it must find). The judge asks under its own
    stage (`rerank_<strategy>_validation`), so its LLM calls are memoised like all others and counted apart."""
    from rerank.run import make_judge  # run.py holds the test-time loop; selection only borrows its judge factory

    if cfg.fusion == "paper":
        return paper_fusion(cfg), {}
    if val_recs is None:
        raise DataError(
            "validation fusion needs the base model's validation ranking; retrain it, or set rerank.fusion = 'paper'"
        )
    started = time.perf_counter()
    fit = train.filter(~pl.col("is_validation"))
    validation = train.filter(pl.col("is_validation"))
    users = validation_sample(validation, cfg, min_rating)
    contexts = validation_contexts(val_recs, users, cfg.pool_size)
    known = replace(inputs, liked=liked_items(fit, min_rating), _people={})
    judge = make_judge(cfg, known, llm, stage=f"rerank_{strategy}_validation")
    try:
        verdicts = judge_verdicts(strategy, judge, contexts, cfg, workers)
    finally:
        gateway = getattr(judge, "gateway", None)
        if gateway is not None:
            gateway.close()
    cost = judge.cost()
    cost.users = len(contexts)
    choice = choose_fusion(contexts, verdicts, relevant_items(validation, min_rating), cfg)
    return choice, {**cost.as_dict(), "seconds": round(time.perf_counter() - started, 2)}


class BaseChoice(BaseModel, frozen=True):
    """The rerank base model chosen on one fold's own validation slice, and every candidate's validation NDCG@10."""

    chosen: str
    validation_ndcg10: dict[str, float]


def best_on_validation(
    rankings: dict[str, pl.DataFrame | None], train: pl.DataFrame, threshold: float
) -> tuple[str, dict[str, float]]:
    """The model (of `rankings`, in preference order for ties) whose validation ranking has the best NDCG@10 on the
    fold's validation slice, and every model's score. Models without a validation ranking are skipped."""
    relevant = relevant_items(train.filter(pl.col("is_validation")), threshold)
    scores = {name: ranking_ndcg(recs, relevant) for name, recs in rankings.items() if recs is not None}
    if not scores:
        raise DataError("no trained model has a validation ranking to choose the rerankers' base model with")
    best = max(scores, key=lambda n: (np.nan_to_num(scores[n], nan=-1.0), -list(scores).index(n)))
    return best, scores
