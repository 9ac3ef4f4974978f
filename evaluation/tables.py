"""Markdown rendering of `summarize` / `paired_tests` output: one table per (protocol, segment)."""

from __future__ import annotations

from typing import Sequence

import polars as pl

SEGMENT_TITLES = {"all": "all users", "cold-start": "cold-start users", "cold_start": "cold-start users"}


def _cell(mean: float | None, std: float | None, mark: str) -> str:
    if mean is None:
        return "–"
    return f"{mean:.3f} ± {std or 0.0:.3f}{mark}"


def markdown_tables(summary: pl.DataFrame, tests: pl.DataFrame | None, *,
                    metrics: Sequence[str] = ("precision", "recall", "ndcg", "map"),
                    k: Sequence[int] = (5, 10, 20), reference: str, models: Sequence[str] | None = None,
                    alpha: float = 0.05, marker: str = "*", directional: bool = False) -> str:
    """Tables with rows = models (given order, else first appearance), columns `metric@k`, cells
    `mean ± std` over folds, `marker` where the paired test vs `reference` has p < alpha (uncorrected).
    `directional`: mark ▲ (better than the reference) or ▼ (worse) instead, by the sign of the mean paired
    difference (every metric here is higher-is-better).

    The `users` column is the number of (fold, user) pairs behind the first metric column; under the paper
    protocol other columns may rest on fewer users (see the per-metric counts in `summary`).
    """
    if models is None:
        models = list(dict.fromkeys(summary["model"].to_list()))
    means = {(r["model"], r["protocol"], r["segment"], r["metric"], r["k"]): r for r in summary.iter_rows(named=True)}
    p: dict[tuple, tuple[float, float]] = {}
    if tests is not None:
        p = {(r["model"], r["protocol"], r["segment"], r["metric"], r["k"]): (r["p_value"], r["mean_diff"])
             for r in tests.iter_rows(named=True)}
    columns = [(m, kk) for m in metrics for kk in k]
    out = []
    slices = summary.select("protocol", "segment").unique(maintain_order=True).iter_rows()
    for protocol, segment in slices:
        out.append(f"### Protocol `{protocol}`, {SEGMENT_TITLES.get(segment, segment)}\n")
        out.append("| model | " + " | ".join(f"{m}@{kk}" for m, kk in columns) + " | users |")
        out.append("|---|" + "---:|" * (len(columns) + 1))
        for model in models:
            cells = []
            for m, kk in columns:
                r = means.get((model, protocol, segment, m, kk))
                pv, diff = p.get((model, protocol, segment, m, kk), (None, None))
                mark = ""
                if model != reference and pv is not None and pv == pv and pv < alpha:
                    mark = ("▲" if (diff or 0.0) > 0 else "▼") if directional else marker
                cells.append(_cell(r and r["mean"], r and r["std"], mark))
            first = means.get((model, protocol, segment, *columns[0])) if columns else None
            users = first["n_users"] if first and first["n_users"] is not None else "–"
            out.append(f"| {model} | " + " | ".join(cells) + f" | {users} |")
        out.append("")
        marks = "▲/▼ (better/worse)" if directional else f"`{marker}`"
        out.append(f"Mean ± sample std over folds. {marks}: two-sided Wilcoxon signed-rank vs `{reference}` "
                   f"on paired per-user values, p < {alpha:g}, uncorrected for multiple comparisons. "
                   "`users`: (fold, user) pairs evaluated.\n")
    return "\n".join(out)
