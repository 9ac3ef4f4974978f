"""Collect every fold's results into one run folder: tables, per-user metrics, recommendations, training logs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from e2ep.config import ExperimentConfig
from e2ep.store import write_parquet, write_text
from evaluation.aggregate import paired_tests, summarize
from evaluation.tables import markdown_tables

TABLE_METRICS = ("precision", "recall", "ndcg", "map")


@dataclass(frozen=True)
class RunReport:
    directory: Path
    markdown: str
    summary: pl.DataFrame
    tests: pl.DataFrame


def training_table(logs: pl.DataFrame, models: list[str]) -> str:
    """Mean training cost and early-stopping outcome per model over folds."""
    if logs.is_empty():
        return ""
    numeric = [c for c in logs.columns if c not in ("model", "fold") and logs[c].dtype.is_numeric()]
    means = logs.group_by("model").agg([pl.col(c).mean() for c in numeric])
    lines = ["| model | " + " | ".join(numeric) + " |", "|---" * (len(numeric) + 1) + "|"]
    for name in models:
        row = means.filter(pl.col("model") == name)
        if row.height:
            cells = [f"{row[c][0]:.4g}" if row[c][0] is not None else "" for c in numeric]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def semantic_section(report: dict[str, Any]) -> str:
    """Where item metadata came from, profile sources per stage, embeddings, and LLM calls/tokens/cost."""
    lines = ["## Semantic layer", "", f"Item metadata: {report['metadata'].get('summary', '')}", "",
             "| profiles | by source | embedded | LLM calls | cache hits | tokens | cost (USD) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, stage in report["profiles"].items():
        sources = ", ".join(f"{k} {v}" for k, v in stage.get("counts", {}).items())
        embedded = report["embeddings"].get(name, {}).get("counts", {}).get("embedded", "–")
        total = stage.get("llm_usage", {}).get("total", {})
        tokens = total.get("prompt_tokens", 0) + total.get("completion_tokens", 0)
        lines.append(f"| {name} | {sources} | {embedded} | {total.get('calls', 0)} | {total.get('cache_hits', 0)} "
                     f"| {tokens} | {total.get('cost_usd', 0.0):.4f} |")
    return "\n".join(lines)


def write_run_report(directory: Path, cfg: ExperimentConfig, per_user: pl.DataFrame, catalog: pl.DataFrame,
                     recommendations: pl.DataFrame, logs: list[dict[str, Any]],
                     semantic: dict[str, Any] | None = None,
                     profiles: dict[str, pl.DataFrame] | None = None,
                     methods: list[str] | None = None) -> RunReport:
    """Write the run folder atomically file by file and return the Markdown summary. `methods`: table rows in
    order (default `cfg.models.names`; reranked methods are added after them)."""
    directory.mkdir(parents=True, exist_ok=True)
    models = methods or cfg.methods()
    summary = summarize(per_user, catalog)
    tests = paired_tests(per_user, cfg.evaluation.reference)
    scalars = [{k: v for k, v in log.items() if isinstance(v, (int, float, str))} for log in logs]
    log_frame = pl.DataFrame(scalars) if scalars else pl.DataFrame()
    folds = sorted(per_user["fold"].unique().to_list())
    header = (
        f"# e2ep experiment `{directory.name}`\n\n"
        f"Dataset **{cfg.dataset.name}**, folds {folds}, models {', '.join(models)}. "
        f"Relevant = test rating ≥ {cfg.relevance.positive_threshold:g}; cold-start = fewer than "
        f"{cfg.evaluation.cold_start_max} training ratings. Values are mean ± std over folds.\n"
    )
    tables = markdown_tables(summary, tests, metrics=TABLE_METRICS, k=cfg.evaluation.k, reference=cfg.evaluation.reference,
                             models=models)
    training = training_table(log_frame, models)
    markdown = header + "\n" + tables + ("\n\n## Training (mean over folds)\n\n" + training if training else "") + "\n"
    if semantic is not None:
        markdown += "\n" + semantic_section(semantic) + "\n"
        write_text(json.dumps(semantic, indent=2, default=str), directory / "semantic.json")
    for name, frame in (profiles or {}).items():
        write_parquet(frame, directory / "profiles" / f"{name}.parquet")

    write_text(markdown, directory / "summary.md")
    write_text(cfg.model_dump_json(indent=2), directory / "config.json")
    write_parquet(summary, directory / "summary.parquet")
    write_parquet(tests, directory / "significance.parquet")
    write_parquet(per_user, directory / "metrics_per_user.parquet")
    write_parquet(catalog, directory / "metrics_catalog.parquet")
    write_parquet(recommendations, directory / "recommendations.parquet")
    if logs:
        write_text(json.dumps(logs, indent=2), directory / "training.json")
    return RunReport(directory=directory, markdown=markdown, summary=summary, tests=tests)
