"""Report figures: the paper's Figure 2 (metrics per method and k, from `summarize` output) and Figure 3 (each
reranker against its base model per user segment, paired intervals from `evaluation.paired`).

Figures are drawn on matplotlib's Agg canvas without pyplot (no global state, safe in worker threads) and saved as
PNG with no timestamp or version metadata, so the same summary gives the same bytes; files are written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from e2ep.store import atomic_write

METRIC_TITLES = {
    "precision": "Precision",
    "recall": "Recall",
    "ndcg": "NDCG",
    "map": "MAP",
    "mrr": "MRR",
    "hit_rate": "HitRate",
}
SEGMENT_LABELS = {"all": "all users", "cold-start": "cold-start users", "cold": "cold-start users"}
DPI = 110
LEGEND_COLS = 6
# PNG text chunks matplotlib would add (its version); dropped so bytes depend on the data only.
PNG_METADATA = {"Software": None}


def _colours(models: Sequence[str]) -> dict[str, tuple[float, ...]]:
    palette = colormaps["tab20" if len(models) > 10 else "tab10"]
    return {m: palette(i % palette.N) for i, m in enumerate(models)}


def _lookup(summary: pl.DataFrame) -> dict[tuple[str, str, str, str, int], tuple[float, float]]:
    return {
        (r["model"], r["protocol"], r["segment"], r["metric"], r["k"]): (r["mean"], r["std"] or 0.0)
        for r in summary.iter_rows(named=True)
    }


def _grouped_bars(
    ax: Axes,
    groups: Sequence[str],
    series: Sequence[str],
    values: np.ndarray,
    errors: np.ndarray,
    colours: dict[str, tuple[float, ...]],
    hatched: frozenset[str] = frozenset(),
) -> None:
    """Bars for `series` side by side within each of `groups`; `values[s, g]` (NaN: no bar)."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, name in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar(
            x + offset,
            np.nan_to_num(values[i]),
            width,
            yerr=np.nan_to_num(errors[i]),
            capsize=2,
            color=colours[name],
            edgecolor="black",
            linewidth=0.4,
            hatch="//" if name in hatched else None,
            error_kw={"elinewidth": 0.8},
            label=name,
        )
    ax.set_xticks(x, groups)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    ax.set_axisbelow(True)


def _panels(n: int, n_series: int) -> tuple[Figure, list[Axes]]:
    """A 2-column grid of `n` panels with room below for a legend of `n_series` entries (fixed margins: the
    constrained layout engine costs seconds per figure)."""
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    legend_rows = (n_series + LEGEND_COLS - 1) // LEGEND_COLS
    legend_in = 0.3 + 0.25 * legend_rows
    height = 3.0 * rows + 0.6 + legend_in
    fig = Figure(figsize=(11, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=0.06, right=0.98, top=1 - 0.6 / height, bottom=(legend_in + 0.35) / height, hspace=0.35, wspace=0.15
    )
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(fig: Figure, ax: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=min(len(labels), LEGEND_COLS), frameon=False)


def metrics_figure(
    summary: pl.DataFrame,
    *,
    protocol: str,
    models: Sequence[str],
    dataset: str,
    metrics: Sequence[str] = ("precision", "recall", "ndcg", "map"),
    k: Sequence[int] = (5, 10, 20),
    segment: str = "all",
) -> Figure:
    """Figure 2: one panel per metric, bars per method grouped by k, error bars = std over folds."""
    table = _lookup(summary)
    fig, axes = _panels(len(metrics), len(models))
    colours = _colours(models)
    for ax, metric in zip(axes, metrics, strict=False):
        values = np.array(
            [[table.get((m, protocol, segment, metric, kk), (np.nan, 0))[0] for kk in k] for m in models], dtype=float
        )
        errors = np.array(
            [[table.get((m, protocol, segment, metric, kk), (np.nan, 0))[1] for kk in k] for m in models], dtype=float
        )
        _grouped_bars(ax, [f"@{kk}" for kk in k], models, values, errors, colours)
        ax.set_title(METRIC_TITLES.get(metric, metric))
    fig.suptitle(f"{dataset}: protocol '{protocol}', {SEGMENT_LABELS.get(segment, segment)} (mean ± std over folds)")
    _legend(fig, axes[0])
    return fig


def reranker_figure(
    intervals: pl.DataFrame,
    *,
    protocol: str,
    methods: Sequence[str],
    dataset: str,
    metrics: Sequence[str] = ("precision", "recall", "ndcg", "map"),
    k: int = 10,
    segments: Sequence[str] = ("all", "cold-start"),
) -> Figure:
    """Figure 3: each reranker against its own base model: the mean per-user difference (reranker − base) of
    metric@k per user segment, with its paired 95 % bootstrap interval (`evaluation.paired.paired_intervals`
    rows); below zero, reranking hurt."""
    table = {
        (r["model"], r["protocol"], r["segment"], r["metric"], r["k"]): (r["mean_diff"], r["low"], r["high"])
        for r in intervals.iter_rows(named=True)
    }
    fig, axes = _panels(len(metrics), len(methods))
    colours = _colours(methods)
    # Short labels: up to six segments share one axis (the cold-start protocol's `cold-start-n<n>` become "new, n").
    labels = [{"all": "all", "cold-start": "cold-start"}.get(s, s.replace("cold-start-n", "new n=")) for s in segments]
    for ax, metric in zip(axes, metrics, strict=False):
        cells = [[table.get((m, protocol, s, metric, k), (np.nan, np.nan, np.nan)) for s in segments] for m in methods]
        values = np.array([[c[0] for c in row] for row in cells], dtype=float)
        low = np.array([[c[1] for c in row] for row in cells], dtype=float)
        high = np.array([[c[2] for c in row] for row in cells], dtype=float)
        width = 0.8 / max(1, len(methods))
        x = np.arange(len(segments))
        for i, name in enumerate(methods):
            offset = (i - (len(methods) - 1) / 2) * width
            err = np.nan_to_num(np.vstack([values[i] - low[i], high[i] - values[i]]))
            ax.bar(
                x + offset,
                np.nan_to_num(values[i]),
                width,
                yerr=np.clip(err, 0, None),
                capsize=2,
                color=colours[name],
                edgecolor="black",
                linewidth=0.4,
                error_kw={"elinewidth": 0.8},
                label=name,
            )
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xticks(x, labels)
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
        ax.set_axisbelow(True)
        ax.set_title(f"Δ {METRIC_TITLES.get(metric, metric)}@{k} vs base")
    fig.suptitle(
        f"{dataset}: reranker − base model, protocol '{protocol}' (mean per-user difference, paired 95 % bootstrap CI)"
    )
    _legend(fig, axes[0])
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write `fig` to `path` as PNG, atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, metadata=PNG_METADATA))
