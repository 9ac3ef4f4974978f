"""`report.md` and its figures, from constructed per-user metric frames whose differences are known."""

import re
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from evaluation.config import RunSettings
from evaluation.summary import RerankOutcome, write_run_report
from flows.config import load_config, resolve_auto, run_settings
from rerank.method import Method

METRICS = ("precision", "recall", "ndcg", "map")
N_USERS = 30


def per_user_frame(shift: dict[str, float], folds=(1, 2), seed: int = 0) -> pl.DataFrame:
    """Every method's value = a shared per-user base + `shift[method]` (+ small noise when shifted): a non-zero
    shift is a consistent per-user difference (Wilcoxon p << 0.05 with >= 24 pairs); a zero shift is the same
    values as every other unshifted method (p = 1)."""
    rng = np.random.default_rng(seed)
    rows = []
    for protocol in ("full", "paper"):
        for segment in ("all", "cold-start"):
            users = range(N_USERS) if segment == "all" else range(12)
            for metric in METRICS:
                for k in (5, 10, 20):
                    for fold in folds:
                        base = rng.uniform(0.1, 0.5, N_USERS)
                        for model, delta in shift.items():
                            noise = rng.normal(0, 0.01, N_USERS) if delta else np.zeros(N_USERS)
                            for u in users:
                                rows.append(
                                    (model, fold, protocol, segment, metric, k, u, float(base[u] + delta + noise[u]))
                                )
    return pl.DataFrame(
        rows, orient="row", schema=["model", "fold", "protocol", "segment", "metric", "k", "user_idx", "value"]
    )


def catalog_frame(models, folds=(1, 2)) -> pl.DataFrame:
    return pl.DataFrame(
        [(m, f, p, "all", "coverage", 10, 0.3) for m in models for f in folds for p in ("full", "paper")],
        orient="row",
        schema=["model", "fold", "protocol", "segment", "metric", "k", "value"],
    )


def config(names: list[str], tmp_path: Path) -> RunSettings:
    cfg = load_config(
        None,
        {
            "models.names": ["popularity", "bpr-mf", "lightgcn"],
            "evaluation.reference": "lightgcn",
            "artifacts_dir": str(tmp_path),
            "rerank.strategies": [],
        },
    )
    # Reranked and ablated methods are named by their producers; the report takes any name.
    return replace(run_settings(resolve_auto(cfg)), methods=tuple(Method.parse(n) for n in names))


def is_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def linked_figures(report: str, run_dir: Path) -> list[Path]:
    return [run_dir / link for link in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)]


def table_row(report: str, section: str, model: str) -> str:
    body = report.split(section, 1)[1]
    return next(line for line in body.splitlines() if line.startswith(f"| {model} |"))


def test_report_with_rerankers_ablations_costs_and_explanations(tmp_path):
    shift = {
        "lightgcn": 0.0,
        "bpr-mf": -0.05,
        "gat": 0.0,
        "gat+relevancy": 0.08,
        "gat+bst": 0.0,
        "gat/no-cosine": -0.06,
    }
    names = list(shift)
    per_user = per_user_frame(shift)
    cost = pl.DataFrame(
        {
            "model": ["gat+relevancy", "gat+relevancy", "gat+bst"],
            "fold": [1, 2, 1],
            "users": [30, 30, 30],
            "calls": [60, 60, 300],
            "prompt_tokens": [6000, 6000, 9000],
            "completion_tokens": [600, 600, 900],
            "cache_hits": [0, 5, 0],
            "repairs": [1, 0, 0],
            "fallbacks": [0, 0, 2],
        }
    )
    texts = {
        (u, r): f"Because user {u} loves slow-burn noir, item rank {r} fits."
        for u in (7, 3, 9, 1)
        for r in (1, 2, 3, 4)
    }
    explanations = pl.DataFrame(
        [("gat+relevancy", 1, u, 100 + r, r, t) for (u, r), t in texts.items()],
        orient="row",
        schema=["model", "fold", "user_id", "item_id", "rank", "explanation"],
    )
    titles = pl.DataFrame({"item_id": [101, 102, 103], "title": ["Chinatown (1974)", "Vertigo (1958)", "Heat (1995)"]})
    run_dir = tmp_path / "run"
    semantic = {
        "metadata": {"summary": "40 items"},
        "profiles": {
            "items": {
                "counts": {"llm": 40},
                "llm_usage": {
                    "total": {
                        "calls": 40,
                        "cache_hits": 3,
                        "prompt_tokens": 4000,
                        "completion_tokens": 800,
                        "cost_usd": 0.01,
                    }
                },
            }
        },
        "embeddings": {"items": {"counts": {"embedded": 40}}},
    }
    write_run_report(
        run_dir,
        config(names, tmp_path),
        per_user,
        catalog_frame(names),
        pl.DataFrame({"x": [1]}),
        [{"model": "gat", "fold": 1, "epochs_run": 12}],
        semantic,
        None,
        RerankOutcome(explanations, cost, {}),
        titles,
    )

    report = (run_dir / "report.md").read_text()
    for heading in (
        "## Figure 2",
        "## Cold-start users",
        "## Figure 3: LLM reranking",
        "## Ablations",
        "## Calls and cost",
        "## Sample explanations",
    ):
        assert heading in report, heading
    figures = linked_figures(report, run_dir)
    assert {p.name for p in figures} == {"metrics-full.png", "metrics-paper.png", "rerank-full.png", "rerank-paper.png"}
    for path in figures:
        width, height = is_png(path)
        assert 600 <= width <= 2000 and 300 <= height <= 1500 and path.stat().st_size > 10_000
    assert not list(run_dir.rglob("*.tmp")), "no temp file left behind"

    # Marks follow the planted differences: bpr-mf worse than the reference, the reranker better than its base,
    # the ablation worse than gat; pure-noise methods unmarked.
    assert "▼" in table_row(report, "### Protocol `full`, all users", "bpr-mf")
    assert "▲" not in table_row(report, "### Protocol `full`, all users", "bpr-mf")
    rerank = report.split("## Figure 3: LLM reranking", 1)[1].split("## Ablations", 1)[0]
    relevancy = table_row(rerank, "all users", "gat+relevancy")
    assert relevancy.count("▲") == 4 and "▼" not in relevancy
    cold_relevancy = table_row(rerank, "cold-start users", "gat+relevancy")
    assert cold_relevancy.count("▲") == 4
    assert not re.search("[▲▼]", table_row(rerank, "all users", "gat+bst"))
    cold = report.split("## Cold-start users", 1)[1].split("## Figure 3")[0]
    assert all(f"| {name} |" in cold for name in names) and "### Protocol `paper`, cold-start users" in cold
    ablation = table_row(report, "## Ablations", "gat/no-cosine")
    assert ablation.count("▼") == 4 and "▲" not in ablation
    assert not re.search("[▲▼]", table_row(report, "## Ablations", "gat"))

    # Costs per reranked user: relevancy 120 calls and 13,200 tokens over 60 users, bst 300 and 9,900 over 30.
    costs = report.split("### Reranking", 1)[1]
    assert re.search(r"\| gat\+relevancy \| – \| 60 \| 0\.0 \| 2\.0 \| 200\.0 \| 20\.0 \| 5 \| 1 \| 0 \|", costs)
    assert re.search(r"\| gat\+bst \| – \| 30 \| 0\.0 \| 10\.0 \| 300\.0 \| 30\.0 \| 0 \| 0 \| 2 \|", costs)
    assert "| items |" in report  # LLM usage of the profile stages

    # Explanations: 3 users (smallest ids) x top-3 items, with titles and the given text.
    sample = report.split("## Sample explanations", 1)[1]
    for u in (1, 3, 7):
        assert f"**User {u}**" in sample
        for r in (1, 2, 3):
            assert texts[(u, r)] in sample
        assert texts[(u, 4)] not in sample
    assert "**User 9**" not in sample and "*Vertigo (1958)* (item 102)" in sample
    assert pl.read_parquet(run_dir / "explanations.parquet").equals(explanations)
    assert pl.read_parquet(run_dir / "rerank_cost.parquet").equals(cost)
    # summary.md (what `make eval` prints) is still written with its tables.
    assert "### Protocol `full`, all users" in (run_dir / "summary.md").read_text()


def test_report_without_rerankers_or_ablations_says_so_and_figures_are_deterministic(tmp_path):
    names = ["popularity", "bpr-mf", "lightgcn"]
    per_user = per_user_frame({"popularity": -0.1, "bpr-mf": 0.0, "lightgcn": 0.0}, folds=(1,))
    for run in ("a", "b"):
        write_run_report(
            tmp_path / run, config(names, tmp_path), per_user, catalog_frame(names, (1,)), pl.DataFrame({"x": [1]}), []
        )
    report = (tmp_path / "a" / "report.md").read_text()
    assert "This run has no reranked methods" in report and "This run has no ablations" in report
    assert "This run produced no explanations" in report and "No LLM was used" in report
    figures = linked_figures(report, tmp_path / "a")
    assert {p.name for p in figures} == {"metrics-full.png", "metrics-paper.png"}
    assert not (tmp_path / "a" / "figures" / "rerank-full.png").exists()
    for path in figures:
        is_png(path)
        assert path.read_bytes() == (tmp_path / "b" / "figures" / path.name).read_bytes()
    assert "▼" in table_row(report, "### Protocol `full`, all users", "popularity")
    cold = report.split("## Cold-start users")[1].split("## Figure 3")[0].replace("▲/▼", "")
    assert "▲" not in cold and "▼" not in table_row(cold, "### Protocol `full`", "bpr-mf")
    assert table_row(cold, "### Protocol `full`", "popularity").count("▼") == 12


def test_headline_uses_the_validation_reference_and_points_to_the_report(tmp_path):
    names = ["popularity", "bpr-mf", "lightgcn"]
    # On test, lightgcn is best and bpr-mf worse; on validation bpr-mf wins, so bpr-mf is the reference.
    per_user = per_user_frame({"popularity": -0.1, "bpr-mf": 0.0, "lightgcn": 0.05}, folds=(1,))
    logs = [
        {"model": "bpr-mf", "fold": 1, "seed": 0, "best_validation_ndcg10": 0.25},
        {"model": "lightgcn", "fold": 1, "seed": 0, "best_validation_ndcg10": 0.21},
        {"model": "popularity", "fold": 1, "seed": 0, "seconds": 0.1},
    ]
    cfg = config(names, tmp_path)
    cfg = replace(cfg, evaluation=cfg.evaluation.model_copy(update={"reference": "auto"}))
    report = write_run_report(
        tmp_path / "run", cfg, per_user, catalog_frame(names, (1,)), pl.DataFrame({"x": [1]}), logs
    )
    lines = report.headline.splitlines()
    table = [line for line in lines if line.startswith("| ")]
    assert "NDCG@10" in table[0] and "MAP@10" in table[0] and "Holm" in table[0]
    assert len(table) == 1 + len(names)  # header + one row per method; no cold-start or paper rows
    rows = {line.split("|")[1].strip(): line for line in table[1:]}
    assert set(rows) == {"popularity", "bpr-mf (ref.)", "lightgcn"}
    assert "±" not in "".join(table)  # one fold, one seed: means only
    assert rows["lightgcn"].count("▲") == 4 and rows["popularity"].count("▼") == 4
    assert re.search(r"\+0\.0[45]\d \[\+0\.0\d\d, \+0\.0\d\d\] \|\s+<0\.001 \|$", rows["lightgcn"])
    assert "validation" in report.headline and str(tmp_path / "run" / "report.md") in lines[-1]
    assert "reference `bpr-mf`" in (tmp_path / "run" / "summary.md").read_text()
    full = (tmp_path / "run" / "report.md").read_text()
    assert "Differences to `bpr-mf`" in full and "| lightgcn | 30 | +0.0" in full


def test_the_summary_is_built_once_and_rendered_everywhere(tmp_path):
    """summary.md, the Prefect summary artifact and the console all render the one RunSummary; with rerankers, its
    Reranking section is part of it from the start (no second pass rewrites summary.md)."""
    from flows.artifacts import report_markdown
    from rerank.config import RerankConfig
    from rerank.selection import BaseChoice

    names = ["popularity", "bpr-mf", "bpr-mf+bst"]
    per_user = per_user_frame({"popularity": -0.1, "bpr-mf": 0.0, "bpr-mf+bst": 0.02}, folds=(1,))
    cost = pl.DataFrame(
        {
            "model": ["bpr-mf+bst"],
            "fold": [1],
            "variant": ["main"],
            "base": ["bpr-mf"],
            "judge": ["semantic"],
            "users": [30],
            "requests": [90],
            "calls": [0],
            "prompt_tokens": [0],
            "completion_tokens": [0],
            "cache_hits": [0],
            "repairs": [0],
            "fallbacks": [0],
            "seconds": [0.5],
            "judge_weight": [0.4],
            "normalisation": ["rank"],
            "validation_ndcg": [0.3],
            "base_ndcg": [0.25],
        }
    )
    explanations = pl.DataFrame(
        {"model": ["bpr-mf+bst"], "fold": [1], "user_id": [1], "item_id": [10], "rank": [1], "explanation": ["fits"]}
    )
    run = replace(
        config(names, tmp_path),
        rerank=RerankConfig(judge="semantic", strategies=["bst"]),
        config_json='{"given": true}',
    )
    choice = BaseChoice(chosen="bpr-mf", validation_ndcg10={"popularity": 0.1, "bpr-mf": 0.2})
    summary = write_run_report(
        tmp_path / "run",
        run,
        per_user,
        catalog_frame(names, (1,)),
        pl.DataFrame({"x": [1]}),
        [],
        rerank=RerankOutcome(explanations, cost, {1: choice}),
    )
    written = (tmp_path / "run" / "summary.md").read_text()
    assert written == summary.markdown and summary.headline in written
    assert written.count("## Reranking") == 1 and "(fold 1: `bpr-mf`)" in summary.rerank
    assert "| bpr-mf+bst |" in summary.rerank.split("### Fusion per fold")[0]
    assert report_markdown(tmp_path / "run", summary.markdown, {}).endswith(summary.markdown)
    assert (tmp_path / "run" / "config.json").read_text() == '{"given": true}'
    assert (tmp_path / "run" / "report.md").read_text() == summary.report
