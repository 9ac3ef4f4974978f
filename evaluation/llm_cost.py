"""The report's LLM estimate-vs-actual table: what `e2ep estimate` said before the run, and what each stage used."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from rerank.method import Method

_FOLD = re.compile(r"^(?P<stage>.+?) fold (?P<fold>\d+)(?P<variant> \[.+\])?$")


def _actual_rows(semantic: dict[str, Any] | None, rerank_cost: pl.DataFrame | None) -> dict[str, dict[str, float]]:
    """Stage label (as the estimate names it) -> calls, cache hits, cost of what the run did."""
    out: dict[str, dict[str, float]] = {}
    for name, stage in ((semantic or {}).get("profiles") or {}).items():
        total = (stage.get("llm_usage") or {}).get("total")
        if not total:
            continue
        label = "item_profiles" if name == "items" else name.replace("users-fold", "user_profiles fold ")
        out[label] = {
            "calls": total.get("calls", 0),
            "cache_hits": total.get("cache_hits", 0),
            "cost_usd": total.get("cost_usd", 0.0),
        }
    if rerank_cost is not None and rerank_cost.height:
        for row in rerank_cost.iter_rows(named=True):
            if row.get("judge") != "llm":
                continue
            strategy = Method.parse(str(row["model"])).strategy
            out[f"rerank_{strategy} fold {row['fold']}"] = {
                "calls": row.get("calls", 0),
                "cache_hits": row.get("cache_hits", 0),
                "cost_usd": row.get("cost_usd") or 0.0,
            }
    return out


def _group(stage: str) -> str:
    match = _FOLD.match(stage)
    return stage if match is None else match["stage"] + (match["variant"] or "")


def estimate_vs_actual(
    estimate: dict[str, Any], semantic: dict[str, Any] | None, rerank_cost: pl.DataFrame | None
) -> str:
    """One row per stage (folds summed): estimated calls (bound), memo hits expected, cost; actual calls, hits, cost."""
    actual = _actual_rows(semantic, rerank_cost)
    groups: dict[str, dict[str, Any]] = {}
    for s in estimate["stages"]:
        g = groups.setdefault(
            _group(s["stage"]),
            {
                "folds": 0,
                "calls": 0,
                "bound": 0,
                "memo": 0,
                "cost": 0.0,
                "known": True,
                "a_calls": 0,
                "a_hits": 0,
                "a_cost": 0.0,
                "seen": 0,
            },
        )
        g["folds"] += 1
        g["calls"] += s["calls"]
        g["bound"] += s["upper_bound"] if s.get("upper_bound") is not None else s["calls"]
        g["memo"] += s.get("cached_calls", 0)
        g["known"] &= s.get("cost_usd") is not None
        g["cost"] += s.get("cost_usd") or 0.0
        if s["stage"] in actual:
            a = actual[s["stage"]]
            g["seen"] += 1
            g["a_calls"] += int(a["calls"])
            g["a_hits"] += int(a["cache_hits"])
            g["a_cost"] += float(a["cost_usd"])
    lines = [
        f"Model `{estimate['model']}`. Estimated before the run (`e2ep estimate`); actual: HTTP calls made "
        "(retries and repairs included), memo hits and litellm's cost of the answers.",
        "",
        "| stage | folds | calls est. | (at most) | in memo est. | cost est. (USD) | calls actual | memo hits "
        "actual | cost actual (USD) | actual / est. calls |",
        "|---|---:|" + "---:|" * 8,
    ]
    for name, g in groups.items():
        est_cost = f"{g['cost']:.4f}" if g["known"] else "unknown"
        bound = f"{g['bound']:,}" if g["bound"] != g["calls"] else ""
        if g["seen"]:
            ratio = f"{g['a_calls'] / g['calls']:.3f}" if g["calls"] else "–"
            got = f"{g['a_calls']:,} | {g['a_hits']:,} | {g['a_cost']:.4f} | {ratio}"
        else:
            got = "– | – | – | –"
        lines.append(f"| {name} | {g['folds']} | {g['calls']:,} | {bound} | {g['memo']:,} | {est_cost} | {got} |")
    return "\n".join(lines)
