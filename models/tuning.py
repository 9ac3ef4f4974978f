"""Per-fold hyperparameter search with Optuna: every tunable model declares its axes in its config and hands the
tuner one function that fits a configuration; the tuner picks the best on the fold's validation slice.

* An all-list space no larger than the budget is searched exhaustively (`GridSampler`); anything else gets
  `n_trials` trials of a `TPESampler` seeded with `training.seed`, so the same seed makes the same choice.
* Iterative models report their validation NDCG@10 after each evaluation; a `MedianPruner` stops trials that fall
  below the median of earlier trials at the same evaluation.
* With `training.tuning.storage` set, the study lives in that database under a name derived from the model, the
  fold's data and the search space, so workers share it and a restarted fit reuses the trials already stored.
* The GAT's `selection_grid` is searched by :func:`grid_search`, which races each later point against the best
  finished one (Optuna's median rule against one fit), so its first value is always fitted in full.

Only `FoldData.validation` ever scores a trial: the tuner sees nothing but the score each fit reports.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import optuna

from models.base import TrainingLog
from models.config import FloatRange, IntRange
from models.training import Report

if TYPE_CHECKING:
    from models.base import FoldData
    from models.config import TrainingConfig

Axis = list[Any] | FloatRange | IntRange
Fitted = TypeVar("Fitted")
FitOne = Callable[[dict[str, Any], Report], tuple[Fitted, TrainingLog]]

NAN_SCORE = -1.0
"""What Optuna is told for a trial without a validation score (NDCG lies in [0, 1], so it never wins)."""


def _no_report(score: float) -> None:
    return None


class _Reporter:
    """Feeds one trial's intermediate validation scores to Optuna and prunes when the pruner says so."""

    def __init__(self, trial: optuna.Trial, prune: bool) -> None:
        self.trial, self.prune, self.steps = trial, prune, 0

    def __call__(self, score: float) -> None:
        self.steps += 1
        if math.isnan(score):
            return
        self.trial.report(score, self.steps - 1)  # 0-based: the pruner's warm-up counts whole evaluations
        if self.prune and self.trial.should_prune():
            raise optuna.TrialPruned(f"validation NDCG@10 {score:.4f} below the median at evaluation {self.steps}")


def grid_points(space: Mapping[str, Axis]) -> int | None:
    """Number of points of an all-list space, None when an axis is a range."""
    sizes = [len(axis) for axis in space.values() if isinstance(axis, list)]
    return math.prod(sizes) if len(sizes) == len(space) else None


def suggest(
    trial: optuna.Trial, space: Mapping[str, Axis], conditions: Mapping[str, tuple[str, Any]] | None = None
) -> dict[str, Any]:
    """The trial's value of every axis; an axis listed in `conditions` as `name: (other, value)` is only drawn
    when `other` took `value` (BM25's parameters only for the BM25 similarity)."""
    params: dict[str, Any] = {}
    for name, axis in space.items():
        condition = (conditions or {}).get(name)
        if condition is not None and params.get(condition[0]) != condition[1]:
            continue
        if isinstance(axis, FloatRange):
            params[name] = trial.suggest_float(name, axis.low, axis.high, log=axis.log)
        elif isinstance(axis, IntRange):
            params[name] = trial.suggest_int(name, axis.low, axis.high, log=axis.log)
        else:
            params[name] = trial.suggest_categorical(name, list(axis))
    return params


def fold_fingerprint(data: FoldData) -> str:
    """A short digest of the fold's training and validation ratings (names a shared study)."""
    digest = hashlib.sha256()
    for frame in (data.train, data.validation):
        for column in ("user_idx", "item_idx", "rating"):
            digest.update(np.ascontiguousarray(frame[column].to_numpy()).tobytes())
    digest.update(f"{data.n_users}:{data.n_items}:{data.positive_threshold}".encode())
    return digest.hexdigest()[:16]


def _space_json(space: Mapping[str, Axis]) -> str:
    return json.dumps(
        {k: v.model_dump() if isinstance(v, (FloatRange, IntRange)) else v for k, v in space.items()}, sort_keys=True
    )


def tune(
    model: str,
    space: Mapping[str, Axis],
    fit_one: FitOne[Fitted],
    data: FoldData,
    training: TrainingConfig,
    n_trials: int,
    started: float,
    conditions: Mapping[str, tuple[str, Any]] | None = None,
) -> tuple[Fitted, TrainingLog]:
    """Search `space` with at most `n_trials` fits of `fit_one(params, report)`; keep the best validation NDCG@10
    (a NaN score loses to any number; ties keep the earlier trial).

    Returns the winner and its log with `trials` (every trial's parameters, outcome and state) and `search`
    (sampler, budget, pruned count, study name, seconds); `seconds` counts from `started` (`time.perf_counter()`).
    """
    cfg = training.tuning
    points = grid_points(space)
    exhaustive = points is not None and points <= n_trials and not conditions
    if exhaustive:
        assert points is not None  # implied by `exhaustive`
        # an exhaustive space has list axes only
        sampler: optuna.samplers.BaseSampler = optuna.samplers.GridSampler(
            {k: list(cast(list[Any], v)) for k, v in space.items()}, seed=training.seed
        )
        budget = points
    else:
        sampler = optuna.samplers.TPESampler(seed=training.seed, n_startup_trials=max(2, n_trials // 3))
        budget = n_trials
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=cfg.pruning_warmup)
        if cfg.pruning
        else optuna.pruners.NopPruner()
    )
    # The budget is not part of the name: a larger budget on a shared storage extends the study already there.
    kind = "grid" if exhaustive else "tpe"
    key = hashlib.sha256(f"{_space_json(space)}|{conditions}|{training.seed}|{kind}".encode()).hexdigest()[:12]
    study_name = f"{model}-{fold_fingerprint(data)}-{key}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        storage=cfg.storage,
        study_name=study_name,
        load_if_exists=cfg.storage is not None,
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    best: dict[str, Any] = {}  # only the best fitted model stays in memory

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, space, conditions)
        reporter = _Reporter(trial, cfg.pruning)
        try:
            fitted, log = fit_one(params, reporter)
        except optuna.TrialPruned:
            trial.set_user_attr("log", {"evaluations": reporter.steps})
            raise
        score = log.best_validation_ndcg10
        value = NAN_SCORE if math.isnan(score) else score
        trial.set_user_attr("log", {k: v for k, v in log.as_dict().items() if k not in ("trials", "search")})
        if not best or value > best["value"]:
            best.update(value=value, number=trial.number, fitted=fitted, log=log)
        return value

    remaining = budget - sum(t.state in finished for t in study.trials)
    search_started = time.perf_counter()
    if remaining > 0:
        study.optimize(objective, n_trials=remaining)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"{model}: no hyperparameter trial finished")
    winner = max(complete, key=lambda t: (t.value, -t.number))
    if best.get("number") != winner.number:  # the winner was fitted by another worker or an earlier run
        fitted, log = fit_one(dict(winner.params), _no_report)
        best.update(fitted=fitted, log=log)
    log = best["log"]
    trials = [
        {"trial": t.number, "state": t.state.name.lower(), **t.params, **t.user_attrs.get("log", {})}
        for t in study.trials
        if t.state in finished
    ]
    search = {
        "sampler": kind,
        "budget": budget,
        "trials": len(trials),
        "pruned": sum(t["state"] == "pruned" for t in trials),
        "study": study_name,
        "storage": "memory" if cfg.storage is None else "shared",
        "seconds": round(time.perf_counter() - search_started, 3),
    }
    return best["fitted"], TrainingLog(
        epochs_run=log.epochs_run,
        best_epoch=log.best_epoch,
        best_validation_ndcg10=log.best_validation_ndcg10,
        seconds=time.perf_counter() - started,
        final_training_loss=log.final_training_loss,
        hyperparameters=log.hyperparameters,
        trials=trials,
        search=search,
        selected=dict(winner.params),
    )


def parameter_grid(**axes: list[Any]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, in order (the last axis varies fastest)."""
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


class Pruned(Exception):
    """Raised by a search's `report` hook to abandon a fit that trails the best one (see :func:`grid_search`)."""


class _Challenger:
    """`report` hook of a grid point fitted after others: abandons it once, after `warmup` evaluations, its best
    validation NDCG@10 so far is below the leading point's score at the same evaluation (Optuna's MedianPruner
    rule against one finished fit)."""

    def __init__(self, leader: list[float], warmup: int) -> None:
        self.leader, self.warmup = leader, warmup
        self.curve: list[float] = []

    def __call__(self, score: float) -> None:
        self.curve.append(round(score, 6))  # rounded as the leader's `TrainingLog.curve` is
        step = len(self.curve) - 1
        if step < self.warmup or step >= len(self.leader) or math.isnan(score):
            return
        best = max((s for s in self.curve if not math.isnan(s)), default=-math.inf)
        if best < self.leader[step]:
            raise Pruned(
                f"validation NDCG@10 {best:.4f} below the leader's {self.leader[step]:.4f} at evaluation {step + 1}"
            )


def grid_search(
    grid: list[dict[str, Any]],
    fit_one: Callable[..., tuple[Fitted, TrainingLog]],
    started: float,
    pruning_warmup: int | None = None,
) -> tuple[Fitted, TrainingLog]:
    """Fit `fit_one(report, **params)` for every grid point in order and keep the best validation NDCG@10 (a NaN
    score loses to any number; ties keep the earlier point). Returns the winner and a log of it, with every trial
    and the total time since `started` (a `time.perf_counter()` reading).

    The first point is always fitted in full, so list the expected winner first. With `pruning_warmup` set, each
    later point races the best so far: its fit's `report(score)` hook raises :class:`Pruned` once, after that
    many evaluations, its best score trails the leader's validation curve at the same evaluation; a pruned point
    cannot win. Without it, `report` never interrupts."""
    best: tuple[float, Fitted, TrainingLog, dict[str, Any]] | None = None
    trials: list[dict[str, Any]] = []
    for params in grid:
        report = _Challenger(best[2].curve, pruning_warmup) if best is not None and pruning_warmup is not None else None
        try:
            fitted, log = fit_one(report or _no_report, **params)
        except Pruned:
            assert report is not None  # only a challenger prunes
            trials.append({**params, "state": "pruned", "evaluations": len(report.curve), "curve": report.curve})
            continue
        trials.append({**params, "state": "complete", **{k: v for k, v in log.as_dict().items() if k != "trials"}})
        score = log.best_validation_ndcg10
        if best is None or score > best[0] or (math.isnan(best[0]) and not math.isnan(score)):
            best = (score, fitted, log, params)
    if best is None:
        raise ValueError("empty hyperparameter grid")
    _, fitted, log, params = best
    seconds = time.perf_counter() - started
    pruned = sum(t["state"] == "pruned" for t in trials)
    return fitted, TrainingLog(
        epochs_run=log.epochs_run,
        best_epoch=log.best_epoch,
        best_validation_ndcg10=log.best_validation_ndcg10,
        seconds=seconds,
        hyperparameters=log.hyperparameters,
        trials=trials,
        search={
            "sampler": "grid",
            "budget": len(grid),
            "trials": len(grid),
            "pruned": pruned,
            "seconds": round(seconds, 3),
        }
        if len(grid) > 1
        else {},
        selected=dict(params),
        curve=log.curve,
    )
