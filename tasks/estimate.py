"""The whole run's LLM cost estimate (`e2ep estimate`, and the first thing every run with an LLM logs), and the
refusal to start a run whose estimate is over `llm.max_cost_usd` / `llm.max_calls`.

Stages, in run order: item profiles (per profile variant written by the LLM), user profiles per fold, each LLM
reranking strategy per fold and the judge calls of its fusion selection on validation users.
"""

from __future__ import annotations

import json
import logging

import polars as pl

from data import Dataset, load_dataset
from data.splits import Fold, make_folds
from e2ep.llm.budget import BudgetExceeded
from e2ep.llm.estimate import Estimator, RunEstimate, StageEstimate
from e2ep.sampling import user_sample
from flows.config import ExperimentConfig, rerank_settings
from rerank.estimate import REPRESENTATIVE_USERS, rerank_estimate
from rerank.selection import relevant_items, requests_per_user, validation_users_per_fold
from semantic.metadata import enrich_items
from semantic.profiles import item_profiles, user_profiles
from semantic.profiles.estimate import item_profiles_estimate, user_profiles_estimate
from tasks.semantic import MAIN_VARIANT, profile_variants

log = logging.getLogger("e2ep.estimate")
_RECENT: dict[str, RunEstimate] = {}  # config JSON -> estimate, so `e2ep run` and its flow count once


def uses_llm(cfg: ExperimentConfig) -> bool:
    if not cfg.semantic:
        return False
    variants, _ = profile_variants(cfg)
    rerank, judge_llm = rerank_settings(cfg)
    return any(p.backend == "llm" for p in variants.values()) or (bool(rerank.strategies) and judge_llm is not None)


def estimate_run(cfg: ExperimentConfig, reuse: bool = False) -> RunEstimate | None:
    """Every LLM request the run would make, counted and priced (None when no stage calls an LLM). `reuse`: the
    estimate this process last made for the same configuration, if any."""
    token = cfg.model_dump_json()
    if reuse and token in _RECENT:
        return _RECENT[token]
    if not uses_llm(cfg):
        return None
    variants, llm = profile_variants(cfg)
    rerank, judge_llm = rerank_settings(cfg)
    est = Estimator(llm)
    try:
        data = load_dataset(cfg.dataset)
        folds = make_folds(data, cfg.split)
        meta = enrich_items(data.items, cfg.metadata).items
        written = {k: p for k, p in variants.items() if p.backend == "llm"}
        rows: list[StageEstimate] = []
        for key, profiles in written.items():
            suffix = "" if key == MAIN_VARIANT else f" [{key}]"
            rows.append(item_profiles_estimate(est, meta, profiles, stage=f"item_profiles{suffix}"))
        for fold in folds:
            for key, profiles in written.items():
                suffix = "" if key == MAIN_VARIANT else f" [{key}]"
                rows.append(
                    user_profiles_estimate(
                        est, fold, meta, profiles, data.n_users, stage=f"user_profiles fold {fold.number}{suffix}"
                    )
                )
        if judge_llm is not None and rerank.strategies:
            test_rows = _rerank_rows(est, cfg, data, folds, meta)
            rows += test_rows + _fusion_selection_rows(cfg, folds, test_rows)
        notes = [
            est.tokenizer_note + "; prices from litellm's local price map",
            "calls in the memo are free and shown apart (their original price in brackets)",
        ]
        if any(r.basis == "formula" for r in rows):
            notes.append(
                "reranking rows (`formula`) are estimates: the base model's candidates do not exist before "
                "training, so calls come from each strategy's call count (BST and batch: the expectation "
                f"for a random-order judge) and tokens from the prompts of {REPRESENTATIVE_USERS} "
                "representative users per fold (template profiles, the most popular unseen items as their "
                "pool); repair requests are not counted"
            )
        if any(r.stage.startswith("user_profiles") for r in rows):
            notes.append(
                "user-profile turns after the first carry the profile written so far: where the memo does "
                "not hold it, its length is taken as one expected profile"
            )
        estimate = RunEstimate(est.model, rows, notes)
    finally:
        est.close()
    _RECENT[token] = estimate
    return estimate


def _rerank_rows(
    est: Estimator, cfg: ExperimentConfig, data: Dataset, folds: list[Fold], meta: pl.DataFrame
) -> list[StageEstimate]:
    """Reranking reads the run's own profiles, written later: the template profiles stand in for them."""
    rerank, _ = rerank_settings(cfg)
    rerank = rerank.model_copy(update={"pool_size": min(rerank.pool_size, cfg.evaluation.n_recommendations)})
    template = cfg.profiles.model_copy(update={"backend": "template"})
    items = dict(item_profiles(meta, template).frame.select("item_idx", "profile").iter_rows())
    users = user_sample(data.n_users, rerank.max_users, rerank.seed) or list(range(data.n_users))
    rows = []
    for fold in folds:
        profiles = user_profiles(fold, meta, template, n_users=data.n_users).frame
        by_user = dict(profiles.select("user_idx", "profile").iter_rows())
        for strategy in rerank.strategies:
            rows.append(
                rerank_estimate(
                    est,
                    strategy,
                    rerank,
                    fold.train,
                    by_user,
                    items,
                    users,
                    cfg.relevance.positive_threshold,
                    f"rerank_{strategy} fold {fold.number}",
                )
            )
    return rows


def _fusion_selection_rows(
    cfg: ExperimentConfig, folds: list[Fold], test_rows: list[StageEstimate]
) -> list[StageEstimate]:
    """The judge calls that choose each fold's fusion weight on validation users (`rerank.fusion = validation`):
    per strategy, the validation users' pools cost what a test user's pool costs, so calls and tokens are the
    test row's figures scaled by the ratio of their upper bounds (validation users x requests per pool)."""
    rerank, _ = rerank_settings(cfg)
    n_bases = len(rerank.base_models or []) or 1
    by_stage = {r.stage: r for r in test_rows}
    rows = []
    for fold in folds:
        validation = fold.train.filter(pl.col("is_validation"))
        eligible = len(relevant_items(validation, cfg.relevance.positive_threshold))
        users = validation_users_per_fold(rerank, eligible) * n_bases
        for strategy in rerank.strategies:
            test = by_stage.get(f"rerank_{strategy} fold {fold.number}")
            if not users or test is None:
                continue
            scale = users * requests_per_user(strategy, rerank) / max(test.upper_bound or test.calls, 1)
            rows.append(
                StageEstimate(
                    stage=f"rerank_{strategy}_validation fold {fold.number}",
                    calls=round(test.calls * scale),
                    prompt_tokens=round(test.prompt_tokens * scale),
                    completion_tokens=round(test.completion_tokens * scale),
                    cost_usd=None if test.cost_usd is None else test.cost_usd * scale,
                    upper_bound=users * requests_per_user(strategy, rerank),
                    basis="formula",
                    note=f"fusion selection on {users} validation users' pools",
                )
            )
    return rows


def check_caps(cfg: ExperimentConfig, estimate: RunEstimate | None) -> None:
    """BudgetExceeded (one line) when the estimate is over `llm.max_cost_usd` or `llm.max_calls`."""
    if estimate is None:
        return
    cap_usd, cap_calls = cfg.llm.max_cost_usd, cfg.llm.max_calls
    if cap_calls is not None and estimate.calls > cap_calls:
        raise BudgetExceeded(
            f"the run would make ~{estimate.calls:,} LLM calls, over llm.max_calls = {cap_calls:,}; "
            "nothing was sent (see `e2ep estimate`; sample with rerank.max_users / "
            "profiles.max_users)"
        )
    if cap_usd is not None:
        cost = estimate.cost_usd
        if cost is None:
            raise BudgetExceeded(
                f"llm.max_cost_usd is set but litellm has no price for {estimate.model}; nothing "
                "was sent (use llm.max_calls for this model)"
            )
        if cost > cap_usd:
            raise BudgetExceeded(
                f"the run would cost ~${cost:,.2f} in LLM calls, over llm.max_cost_usd = "
                f"${cap_usd:,.2f}; nothing was sent (see `e2ep estimate`; sample with "
                "rerank.max_users / profiles.max_users)"
            )


def estimate_json(estimate: RunEstimate) -> str:
    return json.dumps(estimate.to_dict(), indent=2) + "\n"
