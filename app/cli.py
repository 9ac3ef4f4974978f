"""`e2ep`: the command-line face of the project.

    e2ep run [--config FILE] [flags] [--set section.field=value ...]   run the experiment flow
    e2ep estimate [same flags as run] [--json]                          LLM calls, tokens and cost, nothing sent
    e2ep evaluate --test FILE --recs FILE [...]                         score any recommendation list
    e2ep fetch --dataset ml-100k                                        download/prepare a dataset only
    e2ep config [--config FILE] [flags]                                 print the resolved configuration

Flags are shortcuts for fields of `flows.config.ExperimentConfig`; `--set` reaches every other field, with the
value parsed as JSON when it parses (`--set models.lightgcn.num_layers=[2,3]`) and as a string otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from e2ep.runtime import configure_environment

# name: (config path, parser of the flag's text)
_SHORTCUTS: dict[str, tuple[str, Any]] = {
    "dataset": ("dataset.name", str),
    "data_dir": ("dataset.data_dir", str),
    "ratings": ("dataset.ratings_path", str),
    "items": ("dataset.items_path", str),
    "sep": ("dataset.separator", str),
    "rating_scale": ("dataset.rating_scale", lambda s: _scale(s)),
    "n_folds": ("split.n_folds", int),
    "folds": ("split.folds", lambda s: _int_list(s)),
    "random_folds": ("split.official", lambda _: False),
    "seed": ("split.seed", int),
    "models": ("models.names", lambda s: _str_list(s)),
    "k": ("evaluation.k", lambda s: _int_list(s)),
    "protocol": ("evaluation.protocols", lambda s: _str_list(s)),
    "cold_start_max": ("evaluation.cold_start_max", int),
    "relevance": ("relevance.positive_threshold", float),
    "reference": ("evaluation.reference", str),
    "metadata": ("metadata.local_path", str),
    "profiles": ("profiles.backend", str),
    "no_semantic": ("semantic", lambda _: False),
    "max_epochs": ("models.training.max_epochs", int),
    "seeds": ("models.training.seeds", lambda s: _int_list(s)),
    "device": ("models.training.device", str),
    "parallel_folds": ("parallel_folds", int),
    "artifacts_dir": ("artifacts_dir", str),
    "run_name": ("run_name", str),
    "retry_failed": ("llm.retry_failed", lambda _: True),
}


def _str_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in _str_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _scale(text: str) -> list[float]:
    try:
        low, high = (float(part) for part in _str_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rating-scale expects LOW,HIGH (e.g. 1,5), got {text!r}") from None
    return [low, high]


def _parse_set(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects section.field=value, got {item!r}")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file with ExperimentConfig fields")
    parser.add_argument("--dataset", help="ml-100k (default), ml-1m or csv")
    parser.add_argument("--data-dir", help="folder holding extracted ml-100k/ or ml-1m/ (else $E2EP_DATA_DIR)")
    parser.add_argument(
        "--ratings",
        help="csv dataset: ratings file with a header naming user, item, rating "
        "[and timestamp] columns (userId,movieId,rating or user_id,item_id,...)",
    )
    parser.add_argument("--items", help="csv dataset: optional items file keyed by item id (movieId, item_id, ...)")
    parser.add_argument("--sep", help="csv dataset: separator of --ratings/--items (, tab :: | ;); default: sniffed")
    parser.add_argument(
        "--rating-scale",
        metavar="LOW,HIGH",
        help="valid ratings (default: the dataset's declared scale, 1,5 or 0.5,5 for csv)",
    )
    parser.add_argument("--n-folds", help="number of folds (default 5)")
    parser.add_argument("--folds", help="only these 1-based folds, e.g. 1 or 1,2")
    parser.add_argument(
        "--random-folds",
        action="store_const",
        const="1",
        help="ML-100K: seeded random folds instead of the official u1-u5 files",
    )
    parser.add_argument("--seed", help="split seed")
    # not listed from the registry here: that would import every model (torch included) for any command's --help
    parser.add_argument("--models", help="comma-separated model names, e.g. ease,lightgcn,gat (a wrong one lists all)")
    parser.add_argument("--k", help="cut-offs, e.g. 5,10,20")
    parser.add_argument("--protocol", help="full, paper or full,paper")
    parser.add_argument("--cold-start-max", help="cold-start = fewer training ratings than this")
    parser.add_argument("--relevance", help="ratings at or above this are relevant (default 4)")
    parser.add_argument(
        "--reference",
        help="method the significance tests compare against (default auto: the "
        "baseline with the best validation NDCG@10)",
    )
    parser.add_argument("--metadata", help="item metadata CSV keyed by item id (else MovieLens titles and genres)")
    parser.add_argument(
        "--profiles", help="profile backend: auto (default: llm if $E2EP_LLM_MODEL), template, llm or precomputed"
    )
    parser.add_argument("--no-semantic", action="store_const", const="1", help="skip metadata, profiles and embeddings")
    parser.add_argument("--max-epochs", help="cap on training epochs")
    parser.add_argument("--seeds", help="train every model under each of these seeds, e.g. 0,1,2")
    parser.add_argument("--device", help="auto, cpu or cuda")
    parser.add_argument("--parallel-folds", help="fold subflows run at once")
    parser.add_argument("--artifacts-dir", help="where run folders are written (default artifacts)")
    parser.add_argument("--run-name", help="run folder name")
    parser.add_argument(
        "--retry-failed",
        action="store_const",
        const="1",
        help="ask the LLM again for units whose failure is memoised (else a rerun reproduces "
        "their fallback at no cost)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=_parse_set,
        metavar="KEY=VALUE",
        help="any config field, e.g. --set models.training.patience=10 (repeatable)",
    )


def build_config(args: argparse.Namespace):
    from flows.config import load_config

    overrides: dict[str, Any] = {}
    for name, (path, parse) in _SHORTCUTS.items():
        value = getattr(args, name, None)
        if value is not None:
            overrides[path] = parse(value)
    if overrides.get("metadata.local_path"):
        overrides["metadata.source"] = "local"
    overrides.update(dict(args.set))
    return load_config(args.config, overrides)


@contextmanager
def _data_notes_on_stderr() -> Iterator[None]:
    """Show how the data was read (separator, columns used, lines skipped) while it is loaded up front."""
    log = logging.getLogger("data")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("e2ep: %(message)s"))
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # not also to Prefect's API handler: there is no flow run yet
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


def _cmd_run(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    from pathlib import Path

    from data import load_dataset
    from flows.config import resolve_auto
    from flows.rerun import RunMemo, default_run_name, run_key

    # Fail fast, before Prefect starts, on data that cannot be had or parsed: one line, not a flow traceback.
    # (Parsing ML-100K takes ~0.1 s, the 800k-rating ML-1M split under 1 s; a download lands in the cache.)
    with _data_notes_on_stderr():
        dataset = load_dataset(cfg.dataset)
    run_name = default_run_name(cfg)
    cfg = cfg.model_copy(update={"run_name": run_name})
    run_dir = Path(cfg.artifacts_dir) / run_name
    resolved = resolve_auto(cfg)  # once here for the key and the checks; the flow settles `auto` at its entry
    memo = RunMemo(run_key(resolved, dataset))
    reused = None if args.rerun else memo.reuse(run_dir)
    if reused is not None:
        earlier, console = reused
        print(console)
        print(
            f"e2ep: nothing this run reads changed since {earlier}; its results are copied to {run_dir} "
            "(--rerun runs the flow anyway)",
            file=sys.stderr,
        )
        return 0
    from e2ep.errors import E2EPError
    from e2ep.interrupt import leave_if_busy, run_interruptibly
    from e2ep.prefect_server import temporary_server

    # The flow runs in a worker thread so that SIGINT/SIGTERM stop it within seconds (see e2ep.interrupt); with no
    # PREFECT_API_URL, on a local server that ends with this process, even on kill -9. The server starts first:
    # its start-up overlaps the checks and imports below.
    try:
        with temporary_server() as server_ready:
            from tasks.semantic import preflight_llm

            preflight_llm(resolved)  # a missing API key or unknown model, and one tiny request the provider must answer
            from e2ep.llm.budget import BudgetExceeded
            from tasks.estimate import check_caps, estimate_run

            # what the LLM stages will cost (the flow logs it); over llm.max_*: no call
            estimate = estimate_run(resolved)
            try:
                check_caps(resolved, estimate)
            except BudgetExceeded:
                print(estimate.markdown() if estimate is not None else "", flush=True)
                raise
            from flows.experiment import experiment

            server_ready()
            console = run_interruptibly(lambda: experiment(cfg))
    except E2EPError as exc:  # e.g. a stopped LLM stage: one line, and no wait for calls still in flight
        print(f"e2ep: error: {exc}", file=sys.stderr)
        leave_if_busy(2)
        return 2
    print(console)
    memo.remember(run_dir, console)
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    from flows.config import resolve_auto
    from tasks.estimate import check_caps, estimate_json, estimate_run

    cfg = resolve_auto(build_config(args))

    estimate = estimate_run(cfg)
    if estimate is None:
        print("This run makes no LLM call (no model configured, or no stage uses one): it costs nothing.")
        return 0
    print(estimate_json(estimate) if args.json else estimate.markdown())
    check_caps(cfg, estimate)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    print(build_config(args).model_dump_json(indent=2))
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from data import load_dataset

    cfg = build_config(args)
    with _data_notes_on_stderr():
        ds = load_dataset(cfg.dataset)
    print(f"{ds.name}: {ds.ratings.height} ratings, {ds.n_users} users, {ds.n_items} items from {ds.source_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from evaluation.external import evaluate_files

    if args.protocol not in ("full", "paper"):
        raise argparse.ArgumentTypeError(f"--protocol must be full or paper, got {args.protocol!r}")
    ks = _int_list(args.k)
    if not ks or any(k <= 0 for k in ks):
        raise argparse.ArgumentTypeError(f"--k must be positive integers, got {args.k!r}")
    report = evaluate_files(
        args.test,
        args.recs,
        train_path=args.train,
        protocol=args.protocol,
        k=ks,
        relevance_threshold=args.relevance,
        cold_start_max=args.cold_start_max if args.train else None,
        n_items=args.n_items,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_markdown())
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e2ep", description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the experiment flow (load, split, train, evaluate, report)")
    _add_config_flags(run)
    run.add_argument(
        "--rerun",
        action="store_true",
        help="run the flow even when nothing it reads changed since a finished run (whose folder is otherwise copied)",
    )
    run.set_defaults(func=_cmd_run)

    estimate = sub.add_parser("estimate", help="LLM calls, tokens and cost per stage of a run (nothing is sent)")
    _add_config_flags(estimate)
    estimate.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    estimate.set_defaults(func=_cmd_estimate)

    config = sub.add_parser("config", help="print the resolved configuration as JSON")
    _add_config_flags(config)
    config.set_defaults(func=_cmd_config)

    fetch = sub.add_parser("fetch", help="download (or locate) and parse a dataset")
    _add_config_flags(fetch)
    fetch.set_defaults(func=_cmd_fetch)

    ev = sub.add_parser("evaluate", help="score an external recommendation list")
    ev.add_argument("--test", required=True, help="test ratings: u.data-style tab file or CSV user_id,item_id,rating")
    ev.add_argument("--recs", required=True, help="CSV with user_id, item_id (or movie_id), rank")
    ev.add_argument("--train", help="training ratings (enables novelty and the cold-start segment)")
    ev.add_argument("--protocol", default="full", help="full (default) or paper")
    ev.add_argument("--k", default="5,10,20", help="cut-offs (default 5,10,20)")
    ev.add_argument("--relevance", type=float, default=4.0, help="relevant = test rating at or above (default 4)")
    ev.add_argument("--cold-start-max", type=int, default=10, help="cold-start = fewer training ratings than this")
    ev.add_argument("--n-items", type=int, help="catalog size for coverage (default: items seen in the files)")
    ev.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    ev.set_defaults(func=_cmd_evaluate)

    bench = sub.add_parser("bench", help="time and measure peak memory of each stage")
    bench.add_argument(
        "--datasets",
        default="run,ml-100k,ml-1m-split,semantic,rerank",
        help="comma-separated: run (a cold `e2ep run`, the `make eval` experiment, and its time "
        "budget per stage), ml-100k, ml-1m-split, semantic (LLM profiles + embeddings), "
        "rerank (each strategy, offline and LLM judge)",
    )
    bench.add_argument("--run-args", help="flags of the cold `e2ep run` (default: as `make eval`)")
    bench.add_argument("--data-dir", help="folder holding extracted ml-100k/ (else $E2EP_DATA_DIR)")
    bench.add_argument("--ml1m-ratings", help="ratings CSV for the ML-1M benchmark (else $E2EP_ML1M_RATINGS)")
    bench.add_argument(
        "--max-epochs", type=int, help="cap training epochs (per-epoch figures stay exact; fits end early)"
    )
    bench.add_argument(
        "--gat-backends",
        default="dgl,pyg",
        help="GAT backends to time next to the other models (comma-separated; '' for none)",
    )
    bench.set_defaults(func=lambda a: __import__("app.bench", fromlist=["main"]).main(a))
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_environment()
    from pydantic import ValidationError

    from e2ep.errors import E2EPError

    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (E2EPError, FileNotFoundError, argparse.ArgumentTypeError) as exc:
        print(f"e2ep: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        problems = "; ".join(
            ": ".join(filter(None, (".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, "))))
            for e in exc.errors()
        )
        print(f"e2ep: error: invalid configuration: {problems}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the flow started (after, e2ep.interrupt exits 130 itself)
        print("e2ep: stopped by SIGINT", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
