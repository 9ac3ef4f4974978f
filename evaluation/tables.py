"""Markdown rendering of `summarize` / `paired_tests` output: one table per (protocol, segment), the differences to
the reference with their CIs, and the console's headline table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeGuard

import polars as pl

SEGMENT_TITLES = {"all": "all users", "cold-start": "cold-start users", "cold_start": "cold-start users"}


def simulated_segments(segments: Sequence[str]) -> list[str]:
    """The cold-start protocol's segments (`cold-start-n<n>`), by n rather than alphabetically."""
    return sorted((s for s in segments if s.startswith("cold-start-n")), key=lambda s: int(s.rsplit("n", 1)[1]))


def in_segment_order(summary: pl.DataFrame) -> pl.DataFrame:
    """`summary` grouped by protocol (in order of appearance), its segments in reading order within each: all,
    the others as they appear, then the cold-start protocol's by n (rows stable within a segment)."""
    protocols = {p: i for i, p in enumerate(summary["protocol"].unique(maintain_order=True).to_list())}
    segments = summary["segment"].unique(maintain_order=True).to_list()
    natural = [s for s in segments if not s.startswith("cold-start-n")]
    order = {s: i for i, s in enumerate(sorted(natural, key=lambda s: s != "all") + simulated_segments(segments))}
    return (
        summary.with_row_index("_row")
        .sort(
            pl.col("protocol").replace_strict(protocols, return_dtype=pl.Int64),
            pl.col("segment").replace_strict(order, return_dtype=pl.Int64),
            "_row",
        )
        .drop("_row")
    )


def _cell(mean: float | None, std: float | None, mark: str) -> str:
    """`mean ± std`, or the mean alone when there is no spread to show (one fold and one seed)."""
    if mean is None:
        return "–"
    spread = f" ± {std:.3f}" if std is not None and std == std else ""
    return f"{mean:.3f}{spread}{mark}"


def significant(row: dict[str, Any] | None, alpha: float) -> TypeGuard[dict[str, Any]]:
    """Holm-adjusted p of a `paired_tests` row below `alpha` (untested rows never are)."""
    p = None if row is None else row["p_holm"]
    return p is not None and p == p and p < alpha


def _count(value: Any) -> int:
    """A count column's max or min as an int (0 for an empty frame)."""
    return int(value or 0)


def runs_phrase(summary: pl.DataFrame) -> str:
    """ "mean ± std over 5 folds × 3 seeds", "mean ± std over 5 folds", or "one fold, one seed: means only"."""
    folds = _count(summary["n_folds"].max())
    seeds = _count(summary["n_seeds"].max())
    if _count(summary["n_runs"].max()) <= 1:
        return "one fold, one seed: means only"
    fewer = seeds > 1 and _count(summary["n_seeds"].min()) < seeds
    return (
        "mean ± std over "
        + (f"{folds} folds" if folds > 1 else "one fold")
        + (f" × {seeds} seeds" if seeds > 1 else "")
        + (" (a model whose seeds give identical lists counts once per fold)" if fewer else "")
    )


def markdown_tables(
    summary: pl.DataFrame,
    tests: pl.DataFrame | None,
    *,
    metrics: Sequence[str] = ("precision", "recall", "ndcg", "map"),
    k: Sequence[int] = (5, 10, 20),
    reference: str,
    models: Sequence[str] | None = None,
    alpha: float = 0.05,
    marker: str = "*",
    directional: bool = False,
) -> str:
    """Tables with rows = models (given order, else first appearance), columns `metric@k`, cells
    `mean ± std` over runs (fold × seed), `marker` where the user-level paired test vs `reference` has a
    Holm-adjusted p < alpha. `directional`: mark ▲ (better than the reference) or ▼ (worse) instead, by the sign
    of the mean paired difference (every metric here is higher-is-better).

    The `users` column is the number of (fold, user) pairs behind the first metric column; under the paper
    protocol other columns may rest on fewer users (see the per-metric counts in `summary`).
    """
    if models is None:
        models = list(dict.fromkeys(summary["model"].to_list()))
    means = {(r["model"], r["protocol"], r["segment"], r["metric"], r["k"]): r for r in summary.iter_rows(named=True)}
    p: dict[tuple[Any, ...], dict[str, Any]] = {}
    if tests is not None:
        p = {(r["model"], r["protocol"], r["segment"], r["metric"], r["k"]): r for r in tests.iter_rows(named=True)}
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
                test = p.get((model, protocol, segment, m, kk))
                mark = ""
                if model != reference and significant(test, alpha):
                    mark = ("▲" if test["mean_diff"] > 0 else "▼") if directional else marker
                cells.append(_cell(None if r is None else r["mean"], None if r is None else r["std"], mark))
            first = means.get((model, protocol, segment, *columns[0])) if columns else None
            users = first["n_users"] if first and first["n_users"] is not None else "–"
            out.append(f"| {model} | " + " | ".join(cells) + f" | {users} |")
        out.append("")
        marks = "▲/▼ (better/worse)" if directional else f"`{marker}`"
        untested = " Paper-protocol MAP/MRR are not tested (users with a hit only)." if protocol == "paper" else ""
        spread = runs_phrase(summary)
        out.append(
            f"{spread[0].upper() + spread[1:]}. {marks}: vs `{reference}`, two-sided Wilcoxon "
            "signed-rank on per-user differences averaged over folds and seeds, Holm-adjusted across the "
            f"methods of each column, p < {alpha:g}.{untested} `users`: (fold, user) pairs evaluated.\n"
        )
    return "\n".join(out)


def format_p(p: float | None) -> str:
    if p is None or p != p:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _diff(row: dict[str, Any] | None) -> str:
    """`+0.012 [+0.004, +0.020]`: mean user-level difference and its bootstrap CI."""
    if row is None or row["mean_diff"] is None or row["mean_diff"] != row["mean_diff"]:
        return "–"
    low, high = row["ci_low"], row["ci_high"]
    ci = f" [{low:+.3f}, {high:+.3f}]" if low is not None and low == low else ""
    return f"{row['mean_diff']:+.3f}{ci}"


def _test_rows(tests: pl.DataFrame | None) -> dict[tuple[Any, ...], dict[str, Any]]:
    if tests is None:
        return {}
    return {(r["model"], r["protocol"], r["segment"], r["metric"], r["k"]): r for r in tests.iter_rows(named=True)}


def difference_table(
    tests: pl.DataFrame,
    *,
    reference: str,
    models: Sequence[str],
    protocol: str,
    segment: str,
    metrics: Sequence[str],
    k: int,
) -> str:
    """Rows = methods other than `reference`; per metric the mean user-level difference to the reference with its
    95 % bootstrap CI, the Wilcoxon p and its Holm adjustment; `users` = users paired on the first metric."""
    rows = _test_rows(tests)
    head = [f"Δ {m}@{k} [95 % CI] | p (Holm)" for m in metrics]
    out = ["| method | users | " + " | ".join(head) + " |", "|---|---:|" + "---:|---:|" * len(metrics)]
    for model in models:
        if model == reference:
            continue
        cells = []
        for m in metrics:
            r = rows.get((model, protocol, segment, m, k))
            note = r is not None and r["note"]
            if note:
                cells.append("n/a | –")
            else:
                p_value, p_holm = (None, None) if r is None else (r["p_value"], r["p_holm"])
                cells.append(f"{_diff(r)} | {format_p(p_value)} ({format_p(p_holm)})")
        first = rows.get((model, protocol, segment, metrics[0], k))
        out.append(f"| {model} | {first['n_users'] if first else '–'} | " + " | ".join(cells) + " |")
    return "\n".join(out)


HEADLINE_METRICS = (("ndcg", "NDCG"), ("recall", "Recall"), ("precision", "Precision"), ("map", "MAP"))


def headline_table(
    summary: pl.DataFrame,
    tests: pl.DataFrame | None,
    *,
    reference: str,
    models: Sequence[str],
    k: int = 10,
    protocol: str = "full",
    segment: str = "all",
    alpha: float = 0.05,
) -> str:
    """The console's one table: per method NDCG/Recall/Precision/MAP@k (mean ± std over runs, ▲/▼ where the
    Holm-adjusted user-level test vs `reference` has p < alpha), then NDCG@k's difference to the reference with
    its 95 % CI and Holm p. Columns are padded so the Markdown also reads as plain text."""
    means = {
        (r["model"], r["metric"]): r
        for r in summary.filter(
            (pl.col("protocol") == protocol) & (pl.col("segment") == segment) & (pl.col("k") == k)
        ).iter_rows(named=True)
    }
    tests_at = _test_rows(tests)
    head = ["method", *(f"{title}@{k}" for _, title in HEADLINE_METRICS), f"Δ NDCG@{k} [95 % CI]", "p (Holm)"]
    body = []
    for model in models:
        if not any((model, m) in means for m, _ in HEADLINE_METRICS):
            continue
        cells = [f"{model} (ref.)" if model == reference else model]
        for metric, _ in HEADLINE_METRICS:
            r, test = means.get((model, metric)), tests_at.get((model, protocol, segment, metric, k))
            mark = ("▲" if test["mean_diff"] > 0 else "▼") if model != reference and significant(test, alpha) else ""
            cells.append(_cell(None if r is None else r["mean"], None if r is None else r["std"], mark))
        ndcg = tests_at.get((model, protocol, segment, "ndcg", k))
        cells += ["–", "–"] if model == reference else [_diff(ndcg), format_p(None if ndcg is None else ndcg["p_holm"])]
        body.append(cells)
    return _padded([head, *body])


def cold_start_protocol_table(
    summary: pl.DataFrame,
    tests: pl.DataFrame | None,
    *,
    reference: str,
    models: Sequence[str],
    metric: str = "ndcg",
    title: str = "NDCG",
    k: int = 10,
    protocol: str = "full",
    alpha: float = 0.05,
) -> str:
    """The cold-start protocol at a glance: per method, `metric@k` of the simulated new users for each n (mean ±
    std over runs, ▲/▼ where the Holm-adjusted user-level test vs `reference` has p < alpha); empty when the run
    has no such segment. The last row counts the (fold, user) pairs behind each n."""
    chosen = summary.filter((pl.col("protocol") == protocol) & (pl.col("metric") == metric) & (pl.col("k") == k))
    segments = simulated_segments(chosen["segment"].unique().to_list())
    if not segments:
        return ""
    means = {(r["model"], r["segment"]): r for r in chosen.iter_rows(named=True)}
    tests_at = _test_rows(tests)
    head = ["method", *(f"{title}@{k} n = {s.rsplit('n', 1)[1]}" for s in segments)]
    body = []
    for model in models:
        if not any((model, s) in means for s in segments):
            continue
        cells = [f"{model} (ref.)" if model == reference else model]
        for segment in segments:
            r, test = means.get((model, segment)), tests_at.get((model, protocol, segment, metric, k))
            mark = ("▲" if test["mean_diff"] > 0 else "▼") if model != reference and significant(test, alpha) else ""
            cells.append(_cell(None if r is None else r["mean"], None if r is None else r["std"], mark))
        body.append(cells)
    users = [max((r["n_users"] for (_, s), r in means.items() if s == segment), default=0) for segment in segments]
    body.append(["(fold, user) pairs", *(str(n) for n in users)])
    return _padded([head, *body])


def _padded(rows: list[list[str]]) -> str:
    """Markdown table whose columns are padded so it also reads as plain text (first column left-aligned)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=False))
            )
            + " |"
        )

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])
