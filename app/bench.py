"""`make bench`: wall time and peak memory of each pipeline stage, run as plain functions (no Prefect).

Peak memory is the process's resident set size sampled every 5 ms while the stage runs (Linux `/proc`), so it
covers torch's and polars' native allocations that Python's tracemalloc cannot see.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app.measure import StageMeasure, measure
from data.config import DatasetConfig, SplitConfig
from e2ep.errors import DataError
from evaluation.config import EvaluationConfig
from models.config import ModelsConfig
from models.training import TrainingLog

if TYPE_CHECKING:
    from models.base import FoldData


def training_note(log: TrainingLog) -> str:
    """Epochs, seconds per epoch (over every grid point tried) and where early stopping kept the weights."""
    if not log.epochs_run:
        searched = f"{len(log.trials)} closed-form trials, " if log.trials else "no training, "
        return f"{searched}val NDCG@10 {log.best_validation_ndcg10:.4f}"
    # pruned trials record how many evaluations they had, not epochs
    epochs = sum(t.get("epochs_run", 0) for t in log.trials) or log.epochs_run
    grid = f", {log.search.get('sampler', 'grid')} of {len(log.trials)}" if log.trials else ""
    return (
        f"{log.epochs_run} epochs, best {log.best_epoch}, {log.seconds / epochs:.3f} s/epoch{grid}, "
        f"val NDCG@10 {log.best_validation_ndcg10:.4f}"
    )


def with_random_features(data: FoldData, dim: int = 384, seed: int = 0) -> FoldData:
    """`data` with seeded random unit-norm node features of the profile embeddings' size: the GAT's cost does not
    depend on what its features say, so timing needs no semantic stage."""
    import dataclasses

    import torch

    g = torch.Generator().manual_seed(seed)
    unit = lambda n: torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)  # noqa: E731
    return dataclasses.replace(data, user_features=unit(data.n_users), item_features=unit(data.n_items))


def bench_dataset(
    label: str,
    dataset_cfg: DatasetConfig,
    split_cfg: SplitConfig,
    models: ModelsConfig,
    rows: list[StageMeasure],
    gat_backends: Sequence[str] = (),
) -> None:
    """Load, split into every fold, then fit/recommend/evaluate every model on fold 1, and the GAT (`gat`, with
    random features) on each of `gat_backends`."""
    from data import load_dataset, make_folds
    from evaluation.fold import evaluate_fold
    from models.base import fold_data, recommendations_frame
    from models.registry import build_model

    eval_cfg = EvaluationConfig()
    with measure(label, "load", rows) as m:
        ds = load_dataset(dataset_cfg)
        m.note = f"{ds.ratings.height} ratings, {ds.n_users} users, {ds.n_items} items"
    with measure(label, "split (5 folds)", rows):
        folds = make_folds(ds, split_cfg)
    fold = folds[0]
    data = fold_data(fold.train, ds.n_users, ds.n_items)
    # Models that read profile embeddings are timed on random features below, one row per GAT backend.
    plain = [n for n in models.names if not build_model(n, models).uses_features]
    runs: list[tuple[str, str, ModelsConfig, FoldData, str]] = [(n, n, models, data, "") for n in plain]
    if gat_backends:
        featured = with_random_features(data)
        for backend in gat_backends:
            cfg = models.model_copy(update={"gat": models.gat.model_copy(update={"backend": backend})})
            runs.append((f"gat[{backend}]", "gat", cfg, featured, "; random 384-d features (timing only)"))
    for stage, name, cfg, fit_data, extra in runs:
        with measure(label, f"fit+recommend {stage}", rows) as m:
            model = build_model(name, cfg).fit(fit_data)
            recs = recommendations_frame(model, fit_data, eval_cfg.n_recommendations)
            # every model sets training_log in fit; Recommender (models/base.py) does not declare it
            m.note = training_note(model.training_log) + extra  # pyright: ignore[reportAttributeAccessIssue]
        with measure(label, f"evaluate {stage}", rows):
            evaluate_fold(recs, fold.train, fold.test, cfg=eval_cfg, relevance_threshold=4.0, n_items=ds.n_items)


def bench_semantic(label: str, dataset_cfg: DatasetConfig, rows: list[StageMeasure], tmp: Path) -> None:
    """LLM item profiles through the real gateway against the local stand-in server (200 ms per answer,
    concurrency 16: ideally 80 answers/s), the rerun's call count (must be 0), and embedding throughput."""
    import hashlib

    from data import load_dataset
    from e2ep.llm import LLMConfig, LLMGateway
    from e2ep.testing.llm_standin import StubLLM
    from semantic.embed import embed_texts
    from semantic.profiles import EmbeddingConfig, ProfilesConfig, item_profiles, render_profile

    def reply(messages: list[dict]) -> str:
        digest = hashlib.sha256(messages[-1]["content"].encode()).hexdigest()[:8]
        return render_profile(f"Movie {digest}", "An overview.", ["Drama"], ["heist"], "A description.", "Gore.")

    items = load_dataset(dataset_cfg).items
    profiles_cfg = ProfilesConfig(backend="llm")
    with StubLLM(latency_s=0.2, reply=reply) as server:
        llm_cfg = LLMConfig(
            model="openai/stand-in", api_base=server.api_base, concurrency=16, cache_dir=str(tmp / "llm-cache")
        )
        for attempt in ("cold", "rerun"):
            before = server.count
            with LLMGateway(llm_cfg) as gateway, measure(label, f"LLM item profiles ({attempt})", rows) as m:
                result = item_profiles(items, profiles_cfg, gateway=gateway)
                calls = server.count - before
                m.note = f"{calls} calls" + (
                    f", {calls / max(m.elapsed(), 1e-9):.1f} calls/s (ideal 80)" if calls else ""
                )
    texts = result.frame["text"].to_list()
    with measure(label, "embed item profiles", rows) as m:
        embed_texts(texts, EmbeddingConfig(cache=False))
        m.note = f"{len(texts)} texts, {len(texts) / m.elapsed():.0f} texts/s"


def _targets(args: argparse.Namespace) -> dict[str, Callable[[], tuple[DatasetConfig, SplitConfig]]]:
    def ml100k() -> tuple[DatasetConfig, SplitConfig]:
        return DatasetConfig(name="ml-100k", data_dir=args.data_dir), SplitConfig()

    def ml1m_split() -> tuple[DatasetConfig, SplitConfig]:
        path = args.ml1m_ratings or os.environ.get("E2EP_ML1M_RATINGS")
        if not path or not Path(path).is_file():
            raise DataError(
                "no ML-1M-scale ratings CSV: pass --ml1m-ratings or set E2EP_ML1M_RATINGS "
                "(e.g. the paper authors' 800k-rating ML-1M training split)"
            )
        return DatasetConfig(name="csv", ratings_path=path), SplitConfig(official=False)

    return {"ml-100k": ml100k, "ml-1m-split": ml1m_split, "semantic": ml100k, "rerank": ml100k, "run": ml100k}


def main(args: argparse.Namespace) -> int:
    targets = _targets(args)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in targets]
    if unknown:
        raise DataError(f"unknown benchmark dataset(s) {unknown}; known: {', '.join(targets)}")
    rows: list[StageMeasure] = []
    print(f"{'dataset':14s}{'stage':29s}{'wall':>10s}  {'peak RSS':>12s}")
    for name in names:
        try:
            dataset_cfg, split_cfg = targets[name]()
        except DataError as exc:  # one missing dataset should not hide the others' figures
            print(f"  {name:12s} skipped: {exc}")
            continue
        if name == "run":
            from app.bench_run import bench_run

            metadata = os.environ.get("E2EP_ML100K_METADATA")
            run_args = args.run_args.split() if args.run_args else (["--metadata", metadata] if metadata else [])
            bench_run(run_args)
            continue
        if name == "semantic":
            with tempfile.TemporaryDirectory() as tmp:
                bench_semantic(name, dataset_cfg, rows, Path(tmp))
            continue
        if name == "rerank":
            from app.bench_rerank import bench_rerank

            with tempfile.TemporaryDirectory() as tmp:
                bench_rerank(name, dataset_cfg, rows, Path(tmp))
            continue
        models = ModelsConfig()
        if args.max_epochs:
            models = ModelsConfig.model_validate(
                {"training": {"max_epochs": args.max_epochs, "eval_every": min(5, args.max_epochs)}}
            )
        gat_backends = [b.strip() for b in args.gat_backends.split(",") if b.strip()]
        bench_dataset(name, dataset_cfg, split_cfg, models, rows, gat_backends)
    return 0
