"""What a run shows in the Prefect UI's Artifacts tab: result tables, LLM and reranking costs, a report that links
to the run's folder. Frames are built by plain functions (testable without Prefect); `publish_*` only uploads."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from evaluation.summary import RunSummary

USAGE_COLUMNS = ("requests", "cache_hits", "calls", "retries", "repairs", "failures", "prompt_tokens",
                 "completion_tokens", "cost_usd", "saved_cost_usd")  # fmt: skip
COST_FRAMES = {"rerank_cost.parquet": ("rerank-cost", "Reranking LLM calls, tokens, cache hits and fallbacks per "
                                                      "model and fold")}  # fmt: skip


def llm_usage_frame(semantic: dict[str, Any]) -> pl.DataFrame:
    """One row per profile stage (items, users-fold1, ...) and LLM stage label, from the run's semantic report;
    a stage with no LLM (template profiles) has no rows."""
    rows = []
    for profile_stage, report in semantic.get("profiles", {}).items():
        for label, usage in (report.get("llm_usage") or {}).get("stages", {}).items():
            rows.append({"stage": profile_stage, "llm_stage": label, **{c: usage.get(c, 0) for c in USAGE_COLUMNS}})
    schema = {
        "stage": pl.String,
        "llm_stage": pl.String,
        **{c: pl.Float64 if "cost" in c else pl.Int64 for c in USAGE_COLUMNS},
    }
    return pl.DataFrame(rows, schema=schema)


def with_total(frame: pl.DataFrame, label_column: str, keys: tuple[str, ...] = ("fold",)) -> pl.DataFrame:
    """`frame` plus a `total` row summing its numeric columns except `keys` (those and text cells left empty)."""
    if frame.is_empty():
        return frame
    sums: dict[str, Any] = {
        c: frame[c].sum() if frame[c].dtype.is_numeric() and c not in keys else None for c in frame.columns
    }
    sums[label_column] = "total"
    return pl.concat([frame, pl.DataFrame([sums], schema=frame.schema)])


def table_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe rows for a table artifact (NaN and infinities become empty cells)."""

    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and not math.isfinite(value) else value

    return [{k: clean(v) for k, v in row.items()} for row in frame.to_dicts()]


def publish_frame_table(key: str, frame: pl.DataFrame, description: str) -> None:
    """Any frame (e.g. `rerank_cost.parquet`) as a table artifact; an empty frame publishes nothing."""
    if frame.height:
        create_table_artifact(key=key, table=table_rows(frame), description=description)


def report_markdown(run_dir: Path, summary_markdown: str, costs: dict[str, pl.DataFrame]) -> str:
    """The run's report: a `file://` link to its folder and its main files, the cost tables, then the results."""
    folder = run_dir.resolve()
    files = [p for p in ("report.md", "summary.md", "summary.parquet", "recommendations.parquet",
                         "explanations.parquet", "semantic.json", "rerank_cost.parquet", "config.json")
             if (folder / p).is_file()]  # fmt: skip
    lines = [f"# Run `{folder.name}`", "", f"Artifacts folder: [{folder}]({folder.as_uri()})", ""]
    lines += [f"- [{name}]({(folder / name).as_uri()})" for name in files]
    if (folder / "figures").is_dir():
        lines.append(f"- [figures/]({(folder / 'figures').as_uri()})")
    for title, frame in costs.items():
        if frame.height:
            lines += ["", f"## {title}", "", _markdown_table(frame)]
    return "\n".join(lines) + "\n\n" + summary_markdown


def _markdown_table(frame: pl.DataFrame) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))

    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns)
    return head + "".join("\n| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows())


def publish_run_artifacts(run_dir: Path, report: RunSummary) -> None:
    """Results tables, the LLM cost summary, any cost frame found in the run folder, and the linked report; the
    summary is the one `summary.md` was rendered from."""
    create_markdown_artifact(
        key="experiment-summary", markdown=report.markdown, description=f"Results of run {run_dir.name}"
    )
    create_table_artifact(
        key="experiment-results",
        table=table_rows(report.summary),
        description="Mean ± std over folds per model, protocol, segment, metric and k",
    )
    costs: dict[str, pl.DataFrame] = {}
    semantic_file = run_dir / "semantic.json"
    if semantic_file.is_file():
        usage = with_total(llm_usage_frame(json.loads(semantic_file.read_text())), "stage")
        publish_frame_table("llm-cost", usage, "LLM requests, calls, tokens and cost (USD) per profile stage")
        costs["LLM calls and cost (profiles)"] = usage
    for name, (key, description) in COST_FRAMES.items():
        if (run_dir / name).is_file():
            frame = pl.read_parquet(run_dir / name)
            frame = with_total(frame, frame.columns[0])
            publish_frame_table(key, frame, description)
            costs[description] = frame
    create_markdown_artifact(
        key="experiment-report",
        markdown=report_markdown(run_dir, report.markdown, costs),
        description=f"Run {run_dir.name}: folder, costs and results",
    )
    create_link_artifact(
        key="experiment-folder",
        link=run_dir.resolve().as_uri(),
        link_text=str(run_dir.resolve()),
        description="The run's artifacts folder",
    )
