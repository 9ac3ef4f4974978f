"""The run report's "Reranking" section: a table shaped like the paper's Table 1 (each base model and its strategies
at k = 10, all users, cold-start users and the cold-start protocol's new users), the fusion chosen per fold, the
cost of choosing it, and the cost per user of each strategy."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from rerank.config import RerankConfig
from rerank.method import SAMPLE_SUFFIX, Method
from rerank.selection import BaseChoice

COST_COLUMNS = (
    "users",
    "requests",
    "calls",
    "prompt_tokens",
    "completion_tokens",
    "cache_hits",
    "repairs",
    "fallbacks",
    "seconds",
)
METRICS = (("precision", "P"), ("recall", "R"), ("ndcg", "NDCG"), ("map", "MAP"))
SEGMENTS = (("all", "all users"), ("cold-start", "cold-start users"))


def _cell(rows: dict[tuple[str, str, str], dict], model: str, segment: str, metric: str) -> str:
    r = rows.get((model, segment, metric))
    if r is None or r["mean"] is None:
        return "–"
    return f"{r['mean']:.3f}" + (f" ± {r['std']:.3f}" if r["std"] else "")


def _simulated(summary: pl.DataFrame) -> list[str]:
    """The cold-start protocol's segments present, by n."""
    found = {s for s in summary["segment"].unique().to_list() if s.startswith("cold-start-n")}
    return sorted(found, key=lambda s: int(s.rsplit("n", 1)[1]))


def table_one(summary: pl.DataFrame, methods: Sequence[str], protocol: str, k: int = 10) -> str:
    """Rows = methods; columns P/R/NDCG/MAP@k for all users, then for cold-start users (mean ± std over folds),
    NDCG@k of the cold-start protocol's simulated new users per n (when run), and the (fold, user) pairs behind
    them."""
    part = summary.filter((pl.col("protocol") == protocol) & (pl.col("k") == k))
    rows = {(r["model"], r["segment"], r["metric"]): r for r in part.iter_rows(named=True)}
    simulated = _simulated(part)
    head = (
        [f"{short}@{k} ({seg})" for seg, _ in SEGMENTS for _, short in METRICS]
        + [f"NDCG@{k} (new, n = {s.rsplit('n', 1)[1]})" for s in simulated]
        + ["users (all / cold-start)"]
    )
    lines = ["| method | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for model in methods:
        cells = [_cell(rows, model, seg, metric) for seg, _ in SEGMENTS for metric, _ in METRICS]
        cells += [_cell(rows, model, seg, "ndcg") for seg in simulated]
        users = [rows.get((model, seg, "precision"), {}).get("n_users") for seg, _ in SEGMENTS]
        cells.append(" / ".join("–" if u is None else str(u) for u in users))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fusion_table(cost: pl.DataFrame, methods: Sequence[str]) -> str:
    """The fusion each reranker used per fold (and per fold of the cold-start protocol): judge weight w (base 1 − w),
    normalisation, and the validation NDCG@10 of that choice against the base order's (w = 0)."""
    folds = sorted(set(cost["fold"].to_list()))
    lines = ["| method | " + " | ".join(f"fold {f}" for f in folds) + " |", "|---|" + "---|" * len(folds)]
    variants = cost["variant"].unique(maintain_order=True).to_list() if "variant" in cost.columns else [None]
    rows = [(m, v) for v in variants for m in methods]
    for model, variant in rows:
        chosen = cost.filter(pl.col("model") == model)
        if variant is not None:
            chosen = chosen.filter(pl.col("variant") == variant)
        if chosen.is_empty():
            continue
        part = {r["fold"]: r for r in chosen.iter_rows(named=True)}
        cells = []
        for fold in folds:
            r = part.get(fold)
            if r is None or r.get("judge_weight") is None:
                cells.append("–")
                continue
            cell = f"w = {r['judge_weight']:g} ({r['normalisation']})"
            if r.get("validation_ndcg") is not None:
                cell += f"; val. {r['validation_ndcg']:.3f} vs {r['base_ndcg']:.3f}"
            cells.append(cell)
        label = model if variant in (None, "main") else f"{model} ({variant} protocol)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def validation_cost_table(cost: pl.DataFrame, methods: Sequence[str]) -> str:
    """What choosing the fusion on validation cost, summed over folds (and cold-start protocol folds)."""
    if "validation_users" not in cost.columns:
        return ""
    lines = [
        "| method | validation users | judge requests | LLM calls | prompt tokens | completion tokens | "
        "cache hits | seconds |",
        "|---|" + "---:|" * 7,
    ]
    for model in methods:
        part = cost.filter(pl.col("model") == model)
        if part.is_empty():
            continue
        total = [
            int(part[c].fill_null(0).sum())
            for c in (
                "validation_users",
                "validation_requests",
                "validation_calls",
                "validation_prompt_tokens",
                "validation_completion_tokens",
                "validation_cache_hits",
            )
        ]
        lines.append(
            f"| {model} | "
            + " | ".join(map(str, total))
            + f" | {float(part['validation_seconds'].fill_null(0).sum()):.1f} |"
        )
    return "\n".join(lines)


def cost_table(cost: pl.DataFrame, methods: Sequence[str]) -> str:
    """Judge requests, LLM calls and tokens per reranked user, summed over folds; repairs and fallbacks in all.
    Test-time reranking of the main folds only (the fusion's validation cost has its own table)."""
    if "variant" in cost.columns:
        cost = cost.filter(pl.col("variant") == "main")
    lines = [
        "| method | judge | users | judge requests / user | LLM calls / user | prompt tokens / user | "
        "completion tokens / user | cache hits | repairs | fallbacks | seconds |",
        "|---|---|" + "---:|" * 9,
    ]
    for model in methods:
        part = cost.filter(pl.col("model") == model)
        if part.is_empty():
            continue
        total = {c: part[c].sum() for c in COST_COLUMNS if c in part.columns}
        users = max(int(total.get("users", 0)), 1)
        judge = ", ".join(sorted(set(part["judge"].to_list()))) if "judge" in part.columns else "–"
        per = [f"{total.get(c, 0) / users:.1f}" for c in ("requests", "calls", "prompt_tokens", "completion_tokens")]
        lines.append(
            f"| {model} | {judge} | {int(total.get('users', 0))} | "
            + " | ".join(per)
            + f" | {int(total.get('cache_hits', 0))} | {int(total.get('repairs', 0))} | "
            f"{int(total.get('fallbacks', 0))} | {float(total.get('seconds', 0.0)):.1f} |"
        )
    return "\n".join(lines)


def table_rows(bases: Sequence[str], methods: Sequence[str]) -> list[str]:
    """Each base model followed by its reranked lists: a `<base>@sample` row (the base on the reranked user sample)
    by the rerankers of `<base>`."""
    return [
        m
        for b in bases
        for m in [b, *[x for x in methods if Method.parse(x).rerank_base == Method.parse(b).rerank_base]]
    ]


def rerank_section(
    summary: pl.DataFrame, cost: pl.DataFrame, bases: Sequence[str], methods: Sequence[str], settings: str, k: int = 10
) -> str:
    main = cost.filter(pl.col("variant") == "main") if "variant" in cost.columns else cost
    rows = table_rows(bases, methods)
    out = ["## Reranking", "", settings, ""]
    protocols = [p for p in ("full", "paper") if p in set(summary["protocol"].to_list())]
    for protocol in protocols:
        out += [
            f"### Protocol `{protocol}`, k = {k} (cf. the paper's Table 1)",
            "",
            table_one(summary, rows, protocol, k),
            "",
        ]
    out += [
        "### Fusion per fold",
        "",
        fusion_table(cost, methods),
        "",
        "`w`: weight of the judge in the fused score (0: the base order unchanged); `val.`: validation NDCG@10 "
        "of that fusion vs the base order, on the sampled validation users.",
        "",
    ]
    paid = validation_cost_table(cost, methods)
    if paid:
        out += ["### Cost of choosing the fusion (validation)", "", paid, ""]
    out += [
        "### Cost per user",
        "",
        cost_table(main, methods),
        "",
        "`judge requests`: what the judge was asked (for the offline judge, what an LLM would be asked); "
        "`LLM calls`: HTTP requests actually made (0 when answered from the memo); fallbacks: units where the "
        "base order (or a template explanation) replaced an answer still invalid after one repair request.",
        "",
    ]
    out += ["Sample explanations are in `report.md`; all of them in `explanations.parquet`.", ""]
    return "\n".join(out)


def rerank_settings(
    rr: RerankConfig, bases: Sequence[str], base_choices: dict[int, BaseChoice | None], sampled: bool
) -> str:
    """The Reranking section's opening paragraph: the judge (`rr.judge` resolved), which lists were reranked
    (`base_choices`: per fold, the base chosen on validation when `rr.base_models` is None), the fusion, and
    whether only a user sample was reranked (`sampled`: the `<base>@sample` methods were evaluated)."""
    named = ", ".join(f"`{b}`" for b in bases)
    if rr.base_models is None:
        chosen = "; ".join(f"fold {f}: `{c.chosen}`" for f, c in sorted(base_choices.items()) if c)
        where = f"the model best on each fold's validation NDCG@10 ({chosen})"
    else:
        where = named
    if rr.fusion == "paper":
        fusion = (
            f"fused score = {rr.judge_weight:g} · judge + {rr.base_weight:g} · base (both {rr.normalisation}"
            "-normalised within the pool; the paper's fixed fusion)"
        )
    else:
        users = "all" if rr.validation_users is None else f"up to {rr.validation_users}"
        fusion = (
            f"fused score = w · judge + (1 − w) · base, w ∈ {{{', '.join(f'{w:g}' for w in rr.fusion_grid)}}} "
            f"and normalisation ∈ {{{', '.join(rr.fusion_normalisations)}}} chosen per fold on {users} "
            f"validation users' validation items (ties: the smaller w), kept only when significantly better "
            f"than w = 0 there (one-sided Wilcoxon, p < {rr.fusion_alpha:g})"
        )
    settings = (
        f"Judge **{rr.judge}**"
        + (f" (offline, not an LLM: signal `{rr.semantic_signal}`)" if rr.judge == "semantic" else "")
        + f"; each strategy reranks the top {rr.pool_size} of {where}; {fusion}; the rest of each list "
        "follows unchanged."
    )
    if sampled:
        settings += (
            f" Only a seeded sample of {rr.max_users} users is reranked; `<base>{SAMPLE_SUFFIX}` is the base "
            "model on the same users."
        )
    return settings
