"""The run report's "Reranking" section: a table shaped like the paper's Table 1 (base model and each strategy at
k = 10, all users and cold-start users), the cost per user of each strategy, and sample explanations."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

COST_COLUMNS = ("users", "requests", "calls", "prompt_tokens", "completion_tokens", "cache_hits", "repairs",
                "fallbacks", "seconds")
METRICS = (("precision", "P"), ("recall", "R"), ("ndcg", "NDCG"), ("map", "MAP"))
SEGMENTS = (("all", "all users"), ("cold-start", "cold-start users"))


def _cell(rows: dict[tuple[str, str, str], dict], model: str, segment: str, metric: str) -> str:
    r = rows.get((model, segment, metric))
    if r is None or r["mean"] is None:
        return "–"
    return f"{r['mean']:.3f}" + (f" ± {r['std']:.3f}" if r["std"] else "")


def table_one(summary: pl.DataFrame, methods: Sequence[str], protocol: str, k: int = 10) -> str:
    """Rows = methods; columns P/R/NDCG/MAP@k for all users, then for cold-start users (mean ± std over folds), and
    the (fold, user) pairs behind them."""
    part = summary.filter((pl.col("protocol") == protocol) & (pl.col("k") == k))
    rows = {(r["model"], r["segment"], r["metric"]): r for r in part.iter_rows(named=True)}
    head = [f"{short}@{k} ({seg})" for seg, _ in SEGMENTS for _, short in METRICS] + ["users (all / cold-start)"]
    lines = ["| method | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for model in methods:
        cells = [_cell(rows, model, seg, metric) for seg, _ in SEGMENTS for metric, _ in METRICS]
        users = [rows.get((model, seg, "precision"), {}).get("n_users") for seg, _ in SEGMENTS]
        cells.append(" / ".join("–" if u is None else str(u) for u in users))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(cost: pl.DataFrame, methods: Sequence[str]) -> str:
    """Judge requests, LLM calls and tokens per reranked user, summed over folds; repairs and fallbacks in all."""
    lines = ["| method | judge | users | judge requests / user | LLM calls / user | prompt tokens / user | "
             "completion tokens / user | cache hits | repairs | fallbacks | seconds |",
             "|---|---|" + "---:|" * 9]
    for model in methods:
        part = cost.filter(pl.col("model") == model)
        if part.is_empty():
            continue
        total = {c: part[c].sum() for c in COST_COLUMNS if c in part.columns}
        users = max(int(total.get("users", 0)), 1)
        judge = ", ".join(sorted(set(part["judge"].to_list()))) if "judge" in part.columns else "–"
        per = [f"{total.get(c, 0) / users:.1f}" for c in ("requests", "calls", "prompt_tokens", "completion_tokens")]
        lines.append(f"| {model} | {judge} | {int(total.get('users', 0))} | " + " | ".join(per)
                     + f" | {int(total.get('cache_hits', 0))} | {int(total.get('repairs', 0))} | "
                     f"{int(total.get('fallbacks', 0))} | {float(total.get('seconds', 0.0)):.1f} |")
    return "\n".join(lines)


def rerank_section(summary: pl.DataFrame, cost: pl.DataFrame, base: str, methods: Sequence[str], settings: str,
                   k: int = 10) -> str:
    rows = [base, *methods]
    out = ["## Reranking", "", settings, ""]
    protocols = [p for p in ("full", "paper") if p in set(summary["protocol"].to_list())]
    for protocol in protocols:
        out += [f"### Protocol `{protocol}`, k = {k} (cf. the paper's Table 1)", "", table_one(summary, rows,
                                                                                              protocol, k), ""]
    out += ["### Cost per user", "", cost_table(cost, methods), "",
            "`judge requests`: what the judge was asked (for the offline judge, what an LLM would be asked); "
            "`LLM calls`: HTTP requests actually made (0 when answered from the memo); fallbacks: units where the "
            "base order (or a template explanation) replaced an answer still invalid after one repair request.", ""]
    out += ["Sample explanations are in `report.md`; all of them in `explanations.parquet`.", ""]
    return "\n".join(out)
