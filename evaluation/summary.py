"""One typed summary of a run, built once from every fold's results and rendered from that one object: the console
(`headline`), `summary.md` and the Prefect summary artifact (`markdown`), and `report.md` with its figures
(`report`). `write_run_report` writes the whole run folder, file by file atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from e2ep.store import write_parquet, write_text
from evaluation.aggregate import paired_tests, summarize
from evaluation.config import RunSettings
from evaluation.reference import choose_reference
from evaluation.report import (
    TABLE_METRICS,
    hyperparameter_table,
    ordered,
    run_report_markdown,
    semantic_section,
    table_k,
    thresholds,
    training_table,
)
from evaluation.tables import cold_start_protocol_table, headline_table, in_segment_order, markdown_tables, runs_phrase
from rerank.method import Method
from rerank.report import rerank_section, rerank_settings
from rerank.selection import BaseChoice


@dataclass(frozen=True)
class RerankOutcome:
    """What the rerankers produced, with original user and item ids."""

    explanations: pl.DataFrame
    """model, fold, user_id, item_id, rank, explanation."""
    cost: pl.DataFrame
    """One row per (method, fold, variant): the judge's cost and the fusion it used (see rerank/report.py)."""
    base_choices: dict[int, BaseChoice | None]
    """Per fold, the base model chosen on validation (None where `rerank.base_models` named them)."""


@dataclass(frozen=True)
class RunSummary:
    """The run's results and every text shown about them; `markdown`, `headline` and `report` are its renderings."""

    directory: Path
    summary: pl.DataFrame
    tests: pl.DataFrame
    reference: str
    reference_reason: str
    header: str
    headline: str
    """What `make eval` prints: the headline table and where the rest is."""
    tables: str
    training: str = ""
    semantic: str = ""
    rerank: str = ""
    """The Reranking section (empty without rerankers)."""
    report: str = ""
    """`report.md`: every table and figure."""

    @property
    def markdown(self) -> str:
        """`summary.md`, also the Prefect run's summary artifact."""
        md = self.header + "\n" + self.headline + "\n\n" + self.tables
        if self.training:
            md += "\n\n## Training (mean over folds and seeds)\n\n" + self.training
        md += "\n"
        if self.semantic:
            md += "\n" + self.semantic + "\n"
        if self.rerank:
            md += "\n" + self.rerank
        return md


def rerank_markdown(run: RunSettings, summary: pl.DataFrame, rerank: RerankOutcome) -> str:
    """The summary's Reranking section: the paper's Table 1 shape per base model, the fusion chosen per fold,
    calls and tokens per user."""
    if run.rerank is None:
        return ""
    main = rerank.cost.filter(pl.col("variant") == "main")
    methods: list[str] = list(dict.fromkeys(main["model"].to_list()))
    bases: list[str] = list(dict.fromkeys(main["base"].to_list()))
    present = set(summary["model"].to_list())
    sampled = bool(run.rerank.max_users) and any(str(Method.parse(b).sampled()) in present for b in bases)
    settings = rerank_settings(run.rerank, bases, rerank.base_choices, sampled)
    if sampled:
        bases = [str(Method.parse(b).sampled()) for b in bases]
    return rerank_section(summary, rerank.cost, bases, methods, settings)


def write_run_report(
    directory: Path,
    run: RunSettings,
    per_user: pl.DataFrame,
    catalog: pl.DataFrame,
    recommendations: pl.DataFrame,
    logs: list[dict[str, Any]],
    semantic: dict[str, Any] | None = None,
    profiles: dict[str, pl.DataFrame] | None = None,
    rerank: RerankOutcome | None = None,
    item_titles: pl.DataFrame | None = None,
) -> RunSummary:
    """Write the run folder atomically file by file and return its summary.

    `summary.md` holds the tables (what `make eval` prints); `report.md` the full report with figures under
    `figures/`. `rerank` holds the rerankers' explanations and costs; `item_titles` (item_id, title) names the
    items in the explanation sample.
    """
    directory.mkdir(parents=True, exist_ok=True)
    models = run.method_names
    summary = summarize(per_user, catalog)
    scalars = [{k: v for k, v in log.items() if isinstance(v, (int, float, str))} for log in logs]
    log_frame = pl.DataFrame(scalars) if scalars else pl.DataFrame()
    present = ordered(models, set(summary["model"].unique().to_list()))
    reference, reason = choose_reference(run.evaluation.reference, present, log_frame)
    tests = paired_tests(per_user, reference)
    folds = sorted(per_user["fold"].unique().to_list())
    headline = console_summary(
        directory, summary, tests, reference, reason, present, table_k(run), f"{run.dataset}, folds {folds}"
    )
    header = (
        f"# e2ep experiment `{directory.name}`\n\n"
        f"Dataset **{run.dataset}**, folds {folds}, models {', '.join(models)}. "
        f"{thresholds(run)}; cold-start = fewer than "
        f"{run.evaluation.cold_start_max} training ratings. Values: {runs_phrase(summary)}; "
        f"reference `{reference}` ({reason}).\n"
    )
    tables = markdown_tables(
        in_segment_order(summary), tests, metrics=TABLE_METRICS, k=run.evaluation.k, reference=reference, models=models
    )
    explanations = rerank.explanations if rerank is not None else None
    cost = rerank.cost if rerank is not None else None
    if semantic is not None:
        write_text(json.dumps(semantic, indent=2, default=str), directory / "semantic.json")
    for name, frame in (profiles or {}).items():
        write_parquet(frame, directory / "profiles" / f"{name}.parquet")
    if explanations is not None:
        write_parquet(explanations, directory / "explanations.parquet")
    if cost is not None:
        write_parquet(cost, directory / "rerank_cost.parquet")

    report = run_report_markdown(
        directory,
        run,
        per_user,
        summary,
        tests,
        log_frame,
        semantic,
        explanations,
        cost,
        item_titles,
        reference,
        reason,
    )
    chosen = hyperparameter_table(logs, models)
    if chosen:
        report += "\n## Hyperparameters chosen per fold (on each fold's validation slice)\n\n" + chosen + "\n"
    result = RunSummary(
        directory=directory,
        summary=summary,
        tests=tests,
        reference=reference,
        reference_reason=reason,
        header=header,
        headline=headline,
        tables=tables,
        training=training_table(log_frame, models),
        semantic=semantic_section(semantic) if semantic is not None else "",
        rerank=rerank_markdown(run, summary, rerank) if rerank is not None else "",
        report=report,
    )
    write_text(result.markdown, directory / "summary.md")
    write_text(run.config_json, directory / "config.json")
    write_parquet(summary, directory / "summary.parquet")
    write_parquet(tests, directory / "significance.parquet")
    write_parquet(per_user, directory / "metrics_per_user.parquet")
    write_parquet(catalog, directory / "metrics_catalog.parquet")
    write_parquet(recommendations, directory / "recommendations.parquet")
    if logs:
        write_text(json.dumps(logs, indent=2), directory / "training.json")
    write_text(report, directory / "report.md")  # last: its figures exist by the time it links them
    return result


def console_summary(
    directory: Path,
    summary: pl.DataFrame,
    tests: pl.DataFrame,
    reference: str,
    reason: str,
    methods: list[str],
    k: int,
    title: str,
) -> str:
    """The headline table (full protocol, all users, @k) with one line on what the marks mean and one pointing
    to report.md for everything else."""
    full = summary.filter((pl.col("protocol") == "full") & (pl.col("segment") == "all"))
    if full.is_empty():
        return f"No full-protocol results in this run; see {directory / 'report.md'}."
    pairs = full.filter(pl.col("metric") == "ndcg")["n_users"].max()
    paired = tests.filter((pl.col("protocol") == "full") & (pl.col("segment") == "all"))["n_users"].max()
    users = f"{paired} users paired, " if paired else ""
    table = headline_table(summary, tests, reference=reference, models=methods, k=k)
    new_users = cold_start_protocol_table(summary, tests, reference=reference, models=methods, k=k)
    if new_users:
        table += (
            "\n\nCold-start protocol (simulated new users keeping their first n training ratings), full "
            f"protocol:\n\n{new_users}"
        )
    return "\n".join(
        [
            f"{title}. Full protocol, all users ({users}{pairs} (fold, user) pairs); {runs_phrase(summary)}.",
            "",
            table,
            "",
            f"▲/▼: better/worse than `{reference}` ({reason}); Wilcoxon signed-rank on per-user differences "
            "averaged over folds and seeds, Holm-adjusted across methods, p < 0.05; Δ: mean user difference, 95 % "
            "bootstrap CI.",
            f"Everything else (paper protocol, cold-start users, k = 5/20, training, semantic layer, reranking): "
            f"{directory / 'report.md'}",
        ]
    )
