"""The sections of a run's summary and its full `report.md` with figures (assembled in evaluation/summary.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from matplotlib.figure import Figure

from evaluation.aggregate import paired_tests
from evaluation.config import RunSettings
from evaluation.llm_cost import estimate_vs_actual
from evaluation.paired import paired_intervals
from evaluation.plots import metrics_figure, reranker_figure, save_png
from evaluation.tables import (
    cold_start_protocol_table,
    difference_table,
    in_segment_order,
    markdown_tables,
    runs_phrase,
    simulated_segments,
)
from rerank.method import Method
from rerank.report import cost_table

TABLE_METRICS = ("precision", "recall", "ndcg", "map")


def training_table(logs: pl.DataFrame, models: list[str]) -> str:
    """Mean training cost and early-stopping outcome per model over folds (and seeds)."""
    if logs.is_empty():
        return ""
    numeric = [c for c in logs.columns if c not in ("model", "fold", "seed") and logs[c].dtype.is_numeric()]
    means = logs.group_by("model").agg([pl.col(c).mean() for c in numeric])
    lines = ["| model | " + " | ".join(numeric) + " |", "|---" * (len(numeric) + 1) + "|"]
    for name in models:
        row = means.filter(pl.col("model") == name)
        if row.height:
            cells = [f"{row[c][0]:.4g}" if row[c][0] is not None else "" for c in numeric]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def hyperparameter_table(logs: list[dict[str, Any]], models: list[str]) -> str:
    """What each fold chose on its own validation slice, and what the search cost (models with a search only)."""
    rows = [log for log in logs if log.get("search")]
    if not rows:
        return ""
    order = {m: i for i, m in enumerate(models)}
    rows.sort(key=lambda log: (order.get(log["model"], len(order)), log["fold"]))
    lines = [
        "| model | fold | chosen on validation | validation NDCG@10 | trials (pruned) | sampler | search s |",
        "|---|---:|---|---:|---:|---|---:|",
    ]
    for log in rows:
        chosen = ", ".join(
            f"{k}={_value(v)}" for k, v in (log.get("selected") or log.get("hyperparameters", {})).items()
        )
        search = log["search"]
        lines.append(
            f"| {log['model']} | {log['fold']} | {chosen} | "
            f"{log.get('best_validation_ndcg10', float('nan')):.4f}"
            f" | {search.get('trials', 0)} ({search.get('pruned', 0)}) | {search.get('sampler', '')}"
            f" | {search.get('seconds', 0.0):.1f} |"
        )
    return "\n".join(lines)


def semantic_section(report: dict[str, Any]) -> str:
    """Where item metadata came from, profile sources per stage, embeddings, and LLM calls/tokens/cost."""
    lines = [
        "## Semantic layer",
        "",
        f"Item metadata: {report['metadata'].get('summary', '')}",
        "",
        "| profiles | by source | embedded | LLM calls | cache hits | tokens | cost (USD) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, stage in report["profiles"].items():
        sources = ", ".join(f"{k} {v}" for k, v in stage.get("counts", {}).items())
        embedded = report["embeddings"].get(name, {}).get("counts", {}).get("embedded", "–")
        total = stage.get("llm_usage", {}).get("total", {})
        tokens = total.get("prompt_tokens", 0) + total.get("completion_tokens", 0)
        lines.append(
            f"| {name} | {sources} | {embedded} | {total.get('calls', 0)} | {total.get('cache_hits', 0)} "
            f"| {tokens} | {total.get('cost_usd', 0.0):.4f} |"
        )
    return "\n".join(lines)


def _one_line(text: str, limit: int = 600) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def explanations_sample(
    explanations: pl.DataFrame, models: list[str], titles: pl.DataFrame | None = None, n_users: int = 3, top: int = 3
) -> str:
    """A few users' top items with their explanations: the first method (in run order) that has explanations,
    its first fold, the users with the smallest ids, deterministic."""
    if explanations.is_empty():
        return ""
    present = explanations["model"].unique().to_list()
    model = next((m for m in models if m in present), sorted(present)[0])
    frame = explanations.filter(pl.col("model") == model)
    fold = frame["fold"].min()
    frame = frame.filter((pl.col("fold") == fold) & (pl.col("rank") <= top))
    if titles is not None and {"item_id", "title"} <= set(titles.columns):
        frame = frame.join(
            titles.select("item_id", "title").cast({"item_id": frame.schema["item_id"]}), on="item_id", how="left"
        )
    users = sorted(frame["user_id"].unique().to_list())[:n_users]
    out = [f"Method `{model}`, fold {fold}: top-{top} items of {len(users)} users.", ""]
    for user in users:
        out.append(f"**User {user}**\n")
        for row in frame.filter(pl.col("user_id") == user).sort("rank").iter_rows(named=True):
            title = row.get("title")
            name = f"*{title}* (item {row['item_id']})" if title else f"item {row['item_id']}"
            out.append(f"{row['rank']}. {name}: {_one_line(row['explanation'])}")
        out.append("")
    return "\n".join(out)


def thresholds(run: RunSettings) -> str:
    """How ratings were read: the positive and negative thresholds, and that ratings in between (e.g. 3, or 2.5 and
    3.5 on a half-star scale) are neutral."""
    r, (low, high) = run.relevance, run.rating_scale
    step = 1.0 if low == int(low) else 0.5  # a scale starting at 0.5 has half stars
    neutral = [
        v
        for v in (low + step * i for i in range(int((high - low) / step) + 1))
        if r.negative_threshold < v < r.positive_threshold
    ]
    between = f"in between ({', '.join(f'{v:g}' for v in neutral)})" if neutral else "none in between"
    return (
        f"Ratings ≥ {r.positive_threshold:g} are positive (training edges; relevant in test), ≤ "
        f"{r.negative_threshold:g} negative, {between} neutral (rating scale {low:g}-{high:g})"
    )


def table_k(run: RunSettings) -> int:
    k = run.evaluation.k
    return 10 if 10 in k else sorted(k)[len(k) // 2]


def ordered(names: list[str], present: set[str]) -> list[str]:
    """`names` that are present, then any other present method in sorted order."""
    return [n for n in names if n in present] + sorted(present - set(names))


def _figure(fig: Figure, directory: Path, name: str, written: list[str]) -> str:
    save_png(fig, directory / "figures" / name)
    written.append(name)
    return f"figures/{name}"


def run_report_markdown(
    directory: Path,
    run: RunSettings,
    per_user: pl.DataFrame,
    summary: pl.DataFrame,
    tests: pl.DataFrame,
    logs: pl.DataFrame,
    semantic: dict[str, Any] | None = None,
    explanations: pl.DataFrame | None = None,
    rerank_cost: pl.DataFrame | None = None,
    item_titles: pl.DataFrame | None = None,
    reference: str | None = None,
    reference_reason: str = "",
) -> str:
    """`report.md`: figures (written under `figures/`), tables with ▲/▼ significance marks and the differences to
    the reference with CIs, cold-start users, rerankers vs their base model, GAT ablations vs `gat`, LLM calls and
    cost, sample explanations."""
    ev, dataset = run.evaluation, run.dataset
    reference = reference or ev.reference
    methods = ordered(run.method_names, set(summary["model"].unique().to_list()))
    ids = {m: Method.parse(m) for m in methods}
    plain = [m for m in methods if not ids[m].is_reranked and not ids[m].sample]
    reranked = [m for m in methods if ids[m].is_reranked]
    protocols = [p for p in ev.protocols if p in set(summary["protocol"].to_list())]
    segments = summary["segment"].unique().to_list()
    cold = next((s for s in ("cold-start", "cold") if s in segments), None)
    k10 = table_k(run)
    folds = sorted(per_user["fold"].unique().to_list())
    figures: list[str] = []

    def tables(
        frame: pl.DataFrame, against: pl.DataFrame | None, reference: str, rows: list[str], k: list[int] | None = None
    ) -> str:
        return markdown_tables(
            frame,
            against,
            metrics=TABLE_METRICS,
            reference=reference,
            models=rows,
            directional=True,
            k=ev.k if k is None else k,
        )

    md = [
        f"# Run `{directory.name}`: {dataset}",
        "",
        f"Dataset **{dataset}**, folds {folds}, methods {', '.join(f'`{m}`' for m in methods)}. {thresholds(run)}; "
        f"cold-start users have fewer than {ev.cold_start_max} training ratings. Values: {runs_phrase(summary)}; "
        "▲/▼: better/worse than the "
        f"reference (`{reference}`, {reference_reason or 'configured'}, unless a section says otherwise): "
        "two-sided Wilcoxon signed-rank on per-user differences averaged over folds and seeds (users are the "
        "units), Holm-adjusted across the methods compared in each column, p < 0.05. Paper-protocol MAP/MRR "
        "average only users with a hit and are not tested. Protocols: `full` ranks every unseen item; `paper` "
        "first filters each list to the user's test items (the seed authors' protocol, inflated).",
        "",
    ]

    md += ["## Figure 2: ranking quality per method", ""]
    for protocol in protocols:
        fig = metrics_figure(summary, protocol=protocol, models=plain, dataset=dataset, metrics=TABLE_METRICS, k=ev.k)
        link = _figure(fig, directory, f"metrics-{protocol}.png", figures)
        md += [f"![{dataset}, protocol {protocol}]({link})", ""]
        md.append(
            tables(
                summary.filter((pl.col("protocol") == protocol) & (pl.col("segment") == "all")), tests, reference, plain
            )
        )
        md += [
            f"Differences to `{reference}` at k = {k10}, protocol `{protocol}`, all users: mean over users of "
            "(method − reference), 95 % user bootstrap CI, Wilcoxon p (Holm-adjusted).",
            "",
            difference_table(
                tests, reference=reference, models=plain, protocol=protocol, segment="all", metrics=TABLE_METRICS, k=k10
            ),
            "",
        ]

    md += ["## Cold-start users", ""]
    if cold is None:
        md += ["No cold-start users were evaluated in this run.", ""]
    else:
        md.append(tables(summary.filter(pl.col("segment") == cold), tests, reference, methods))
    simulated = simulated_segments(segments)
    if simulated:
        cs = ev.cold_start_protocol
        md += [
            "## Cold-start protocol (simulated new users)",
            "",
            f"Per fold, {cs.share:.0%} of the test users with more than {max(cs.n)} training ratings keep only "
            f"their first n by time (one group of users per n ∈ {cs.n}); every model is retrained on that "
            "truncated training set and evaluated on those users only.",
            "",
            cold_start_protocol_table(summary, tests, reference=reference, models=methods, k=k10),
            "",
        ]
        part = in_segment_order(summary.filter(pl.col("segment").is_in(simulated)))
        md.append(tables(part, tests, reference, methods))

    md += ["## Figure 3: LLM reranking", ""]
    if not reranked:
        md += ["This run has no reranked methods (methods named `<base>+<strategy>`, e.g. `gat+relevancy`).", ""]
    else:
        bases = list(dict.fromkeys(ids[m].rerank_base for m in reranked))
        segments = [s for s in ("all", cold, *simulated) if s]
        # With rerank.max_users the reranked methods cover a user sample: they are paired with the base on it.
        paired_base = {
            m: next(c for c in (str(ids[m].rerank_base.sampled()), str(ids[m].rerank_base)) if c in methods)
            for m in reranked
        }
        intervals = paired_intervals(per_user, [(m, paired_base[m]) for m in reranked], metrics=TABLE_METRICS, k=k10)
        md += [
            f"Each reranker against its own base model, @{k10}: mean per-user difference with a paired 95 % "
            "bootstrap interval over (fold, user) pairs (fold difficulty cancels out); ▲/▼ in the tables: "
            "against the base model.",
            "",
        ]
        for protocol in protocols:
            fig = reranker_figure(
                intervals,
                protocol=protocol,
                methods=reranked,
                dataset=dataset,
                metrics=TABLE_METRICS,
                k=k10,
                segments=segments,
            )
            link = _figure(fig, directory, f"rerank-{protocol}.png", figures)
            md += [f"![reranking, protocol {protocol}]({link})", ""]
        for base_id in bases:
            members = [r for r in reranked if ids[r].rerank_base == base_id]
            # With rerank.max_users the reranked methods cover a user sample: compare them with the base on it.
            base = str(base_id.sampled()) if str(base_id.sampled()) in methods else str(base_id)
            group = [base, *members]
            frame = per_user.filter(pl.col("model").is_in(group))
            md.append(
                tables(
                    in_segment_order(summary.filter(pl.col("model").is_in(group))),
                    paired_tests(frame, base),
                    base,
                    group,
                    k=[k10],
                )
            )

    ablations = [m for m in methods if ids[m].is_ablation]
    md += ["## Ablations", ""]
    if not ablations:
        md += ["This run has no ablations (methods named `gat/<ablation>`).", ""]
    else:
        group = (["gat"] if "gat" in methods else []) + ablations
        against = paired_tests(per_user.filter(pl.col("model").is_in(group)), "gat") if "gat" in methods else None
        md += ["GAT variants beside `gat`; ▲/▼ against `gat`.", ""]
        md.append(
            tables(
                summary.filter(pl.col("model").is_in(group) & (pl.col("segment") == "all")),
                against,
                "gat",
                group,
                k=[k10],
            )
        )

    md += ["## Calls and cost", ""]
    if semantic is not None:
        md += [semantic_section(semantic).replace("## Semantic layer", "### Profiles (semantic layer)"), ""]
    if rerank_cost is not None and rerank_cost.height:
        md += ["### Reranking", "", cost_table(rerank_cost, reranked), ""]
    if semantic is None and (rerank_cost is None or rerank_cost.is_empty()):
        md += ["No LLM was used in this run.", ""]
    if semantic is not None and semantic.get("llm_estimate"):
        md += [
            "### LLM estimate vs actual",
            "",
            estimate_vs_actual(semantic["llm_estimate"], semantic, rerank_cost),
            "",
        ]

    md += ["## Sample explanations", ""]
    sample = explanations_sample(explanations, methods, item_titles) if explanations is not None else ""
    md += [sample or "This run produced no explanations.", ""]

    training = (
        training_table(logs, [m for m in methods if m in set(logs["model"].to_list())])
        if "model" in logs.columns
        else ""
    )
    if training:
        md += ["## Training (mean over folds and seeds)", "", training, ""]
    for stale in (directory / "figures").glob("*.png"):  # from an earlier report in this folder
        if stale.name not in figures:
            stale.unlink()
    return "\n".join(md)
