"""The report stage: gather every fold's files (with original user and item ids) and hand them to the evaluation
stage, which writes the run folder and returns the run's one summary."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from data import Dataset
from e2ep.store import write_text
from evaluation.config import RunSettings
from evaluation.summary import RerankOutcome, RunSummary, write_run_report
from tasks.data import DatasetRef
from tasks.rerank import RerankedRef
from tasks.results import FoldResult, SemanticResult
from tasks.semantic import StageRef
from tasks.train import TrainedRef


def collect_results(
    run: RunSettings,
    dataset: DatasetRef,
    results: list[FoldResult],
    semantic: SemanticResult | None,
    run_dir: Path,
    estimate: dict[str, Any] | None = None,
) -> RunSummary:
    """Gather every fold's files into the run folder, with original user and item ids."""
    data = dataset.load()
    per_user = pl.concat([e.per_user.read_parquet() for r in results for e in r.evaluated], how="vertical_relaxed")
    catalog = pl.concat([e.catalog.read_parquet() for r in results for e in r.evaluated], how="vertical_relaxed")
    recs = pl.concat(
        [
            t.recommendations.read_parquet().with_columns(
                pl.lit(t.model).alias("model"), pl.lit(t.fold).alias("fold"), pl.lit(t.seed, pl.Int64).alias("seed")
            )
            for r in results
            for t in [*r.trained, *r.reranked]
        ]
    )
    recs = (
        data.with_original_ids(recs)
        .select("model", "fold", "seed", "user_id", "item_id", "rank", "score")
        .sort("model", "fold", "seed", "user_id", "rank")
    )
    logs = training_rows(t for r in results for t in r.trained)
    cold_logs = training_rows(t for r in results for t in r.cold_start_trained)
    profiles: dict[str, StageRef] = {}
    if semantic is not None:
        profiles = {
            "items": semantic.item_profiles,
            **{f"users-fold{r.fold}": r.user_profiles for r in results if r.user_profiles is not None},
        }
    reranked = [t for r in results for t in r.reranked]
    rerank = None
    if reranked:
        explanations, cost = rerank_frames(data, reranked, [t for r in results for t in r.cold_start_reranked])
        rerank = RerankOutcome(explanations, cost, {r.fold: r.base_choice for r in results})
    summary = write_run_report(
        run_dir,
        run,
        per_user,
        catalog,
        recs,
        logs,
        semantic_report(semantic, results, profiles, estimate),
        {name: ref.file.read_parquet() for name, ref in profiles.items()},
        rerank=rerank,
        item_titles=data.item_titles(),
    )
    if cold_logs:  # the cold-start protocol's fits: what each used and cost, beside the full folds' training.json
        write_text(json.dumps(cold_logs, indent=2), run_dir / "training-cold-start.json")
    return summary


def semantic_report(
    semantic: SemanticResult | None,
    results: list[FoldResult],
    profiles: dict[str, StageRef],
    estimate: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """`semantic.json`: what each semantic stage reported, and the LLM estimate made before the run."""
    if semantic is None:
        return None
    report: dict[str, Any] = {
        "metadata": semantic.metadata.report,
        "profiles": {name: ref.report for name, ref in profiles.items()},
        "embeddings": {
            "items": semantic.item_embeddings.report,
            **{f"users-fold{r.fold}": r.user_embeddings.report for r in results if r.user_embeddings},
            **{
                f"users-fold{r.fold}-cold-start": r.cold_start_user_embeddings.report
                for r in results
                if r.cold_start_user_embeddings
            },
        },
    }
    if estimate is not None:
        report["llm_estimate"] = estimate  # the report sets it beside what each stage used
    return report


def training_rows(trained: Iterable[TrainedRef]) -> list[dict[str, Any]]:
    """One row per fit for `training.json`: the method, fold and seed, then its training log."""
    return [{"model": t.model, "fold": t.fold, "seed": t.seed, **t.log} for t in trained]


def rerank_frames(
    data: Dataset, reranked: Sequence[RerankedRef], cold_start: Sequence[RerankedRef] = ()
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every reranked list's explanations (with original ids) and the cost of each (method, fold, variant): the
    test-time cost, the fusion used (`judge_weight`, `normalisation`, `fusion`, validation NDCG@10 of the choice and
    of the base) and what choosing it cost (`validation_*`); `variant` is `main` or `cold-start` (the cold-start
    protocol's truncated training set)."""
    explanations = pl.concat(
        [
            r.explanations.read_parquet().with_columns(pl.lit(r.model).alias("model"), pl.lit(r.fold).alias("fold"))
            for r in reranked
        ],
        how="vertical_relaxed",
    )
    explanations = (
        data.with_original_ids(explanations)
        .select("model", "fold", "user_id", "item_id", "rank", "explanation")
        .sort("model", "fold", "user_id", "rank")
    )
    rows: list[dict[str, Any]] = []
    for variant, refs in (("main", reranked), ("cold-start", cold_start)):
        for r in refs:
            f = r.fusion
            fusion = {
                "judge_weight": f.judge_weight,
                "normalisation": f.normalisation,
                "validation_ndcg": f.validation_ndcg,
                "base_ndcg": f.base_ndcg,
                "judge_only_ndcg": f.grid.get("rank@1"),
            }  # the judge's own order
            paid = {f"validation_{k}": v for k, v in r.validation_cost.items()}
            rows.append(
                {
                    "model": r.model,
                    "fold": r.fold,
                    "variant": variant,
                    "base": r.base,
                    **r.cost,
                    "fusion": f.source,
                    **fusion,
                    **paid,
                }
            )
    return explanations, pl.DataFrame(rows)


# task(...)(fn), as the decorator does: prefect's overloads type no task(fn, name=...) call.
report_task = task(name="report", cache_policy=NO_CACHE, persist_result=False)(collect_results)
