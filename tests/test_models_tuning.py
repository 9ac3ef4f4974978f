"""The per-fold hyperparameter search (models/tuning.py): budget, seed, grids, pruning, shared storage, and that
only the fold's validation slice decides."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from flows.config import load_config
from models.base import FoldData, fold_data
from models.config import FloatRange, IntRange, RP3betaConfig, TrainingConfig, TuningConfig
from models.rp3beta import RP3betaRecommender
from models.training import TrainingLog, ndcg_at_k
from models.tuning import grid_points, tune
from tests.synthetic import planted_fold


@pytest.fixture(scope="module")
def data() -> FoldData:
    return planted_fold()[0]


class Objective:
    """A known function of the hyperparameters standing in for a fit; counts its calls."""

    def __init__(self, curve: dict | None = None) -> None:
        self.calls: list[dict] = []
        self.curve = curve or {}

    def __call__(self, params: dict, report) -> tuple[dict, TrainingLog]:
        self.calls.append(dict(params))
        x = params.get("x", 0.0)
        score = 1.0 - (math.log10(x) - 1.0) ** 2 / 10 if x else float("nan")
        curve = self.curve.get(params.get("name"), [])
        for step_score in curve:
            report(step_score)
        score = max(curve, default=score)
        return dict(params), TrainingLog(best_validation_ndcg10=score, hyperparameters=dict(params))


def run(space, objective, data, n_trials, seed=0, conditions=None, **tuning):
    training = TrainingConfig(seed=seed, tuning=TuningConfig(**tuning))
    return tune("toy", space, objective, data, training, n_trials, 0.0, conditions)


def test_tpe_respects_the_budget_and_the_seed(data: FoldData) -> None:
    space = {"x": FloatRange(low=0.1, high=1000.0, log=True), "k": IntRange(low=1, high=50)}
    first, second, other = Objective(), Objective(), Objective()
    fitted, log = run(space, first, data, n_trials=7, seed=3)
    run(space, second, data, n_trials=7, seed=3)
    run(space, other, data, n_trials=7, seed=4)
    assert len(first.calls) == len(log.trials) == 7 and log.search["sampler"] == "tpe"
    assert first.calls == second.calls and first.calls != other.calls
    best = max(first.calls, key=lambda p: 1.0 - (math.log10(p["x"]) - 1.0) ** 2)
    assert fitted == best and log.hyperparameters == best
    assert all(0.1 <= p["x"] <= 1000.0 and 1 <= p["k"] <= 50 for p in first.calls)


def test_a_grid_within_the_budget_is_searched_exhaustively_once(data: FoldData) -> None:
    space = {"x": [1.0, 10.0, 100.0], "name": ["a", "b"]}
    objective = Objective()
    _, log = run(space, objective, data, n_trials=20)
    assert grid_points(space) == 6 and log.search == {**log.search, "sampler": "grid", "budget": 6, "trials": 6}
    assert sorted((p["x"], p["name"]) for p in objective.calls) == sorted(
        (x, n) for x in [1.0, 10.0, 100.0] for n in ["a", "b"]
    )
    assert log.hyperparameters["x"] == 10.0
    # a larger grid than the budget is sampled, never exceeding it
    objective = Objective()
    _, log = run({"x": [1.0, 3.0, 10.0, 30.0, 100.0]}, objective, data, n_trials=3)
    assert len(objective.calls) == 3 and log.search["sampler"] == "tpe"


def test_conditional_axes_are_drawn_only_when_their_condition_holds(data: FoldData) -> None:
    objective = Objective()
    space = {"name": ["a", "b"], "x": FloatRange(low=1.0, high=100.0)}
    run(space, objective, data, n_trials=8, conditions={"x": ("name", "b")})
    assert {p["name"] for p in objective.calls} == {"a", "b"}
    assert all(("x" in p) == (p["name"] == "b") for p in objective.calls)


def test_a_nan_score_never_wins(data: FoldData) -> None:
    _, log = run({"x": [0.0, 1000.0]}, Objective(), data, n_trials=2)
    assert log.hyperparameters == {"x": 1000.0} and not math.isnan(log.best_validation_ndcg10)


def test_trials_below_the_median_are_pruned(data: FoldData) -> None:
    curves = {"good": [0.5] * 6, "fine": [0.4] * 6, "bad": [0.1] * 6}
    space = {"name": ["good", "fine", "bad"], "x": [10.0]}
    objective = Objective(curves)
    _, log = run(space, objective, data, n_trials=3, seed=3, pruning_warmup=2)  # seed 3: fine, good, then bad
    assert [p["name"] for p in objective.calls] == ["fine", "good", "bad"]
    states = {t["name"]: t["state"] for t in log.trials}
    assert states == {"fine": "complete", "good": "complete", "bad": "pruned"} and log.search["pruned"] == 1
    assert [t for t in log.trials if t["name"] == "bad"][0]["evaluations"] == 3  # after the 2 warm-up evaluations
    assert log.hyperparameters["name"] == "good"
    _, unpruned = run(space, Objective(curves), data, n_trials=3, seed=3, pruning=False)
    assert unpruned.search["pruned"] == 0


def test_a_shared_storage_reuses_finished_trials(data: FoldData, tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'tuning.db'}"
    space = {"x": FloatRange(low=0.1, high=1000.0, log=True)}
    first, second = Objective(), Objective()
    fitted, log = run(space, first, data, n_trials=5, storage=storage)
    again, relog = run(space, second, data, n_trials=5, storage=storage)
    assert len(first.calls) == 5 and second.calls == [fitted]  # only the winner is refitted
    assert again == fitted and relog.search["study"] == log.search["study"] and len(relog.trials) == 5
    third = Objective()
    _, extended = run(space, third, data, n_trials=7, storage=storage)  # a larger budget adds the difference
    assert len(extended.trials) == 7 and 2 <= len(third.calls) <= 3


def popular_versus_niche_fold() -> tuple[FoldData, pl.DataFrame]:
    """Validation holds each user's unseen *popular* item, test an unseen *niche* one: validation prefers no
    popularity penalty (RP3beta's beta = 0), test a strong one (beta = 1)."""
    rng = np.random.default_rng(0)
    popular, niche = np.arange(10), np.arange(10, 40)
    train, validation, test = [], [], []
    for u in range(60):
        liked_popular = rng.permutation(popular)
        liked_niche = rng.permutation(niche)
        train += [(u, int(i), 5.0, False) for i in liked_popular[:6]]
        train += [(u, int(i), 5.0, False) for i in liked_niche[:2]]
        validation.append((u, int(liked_popular[6]), 5.0, True))
        test.append((u, int(liked_niche[2]), 5.0))
    frame = pl.DataFrame(train + validation, schema=["user_idx", "item_idx", "rating", "is_validation"], orient="row")
    return fold_data(frame, 60, 40), pl.DataFrame(test, schema=["user_idx", "item_idx", "rating"], orient="row")


def test_selection_follows_validation_even_when_test_disagrees() -> None:
    data, test = popular_versus_niche_fold()
    assert test.join(data.validation, on=["user_idx", "item_idx"]).is_empty()
    cfg = RP3betaConfig(alpha=[1.0], beta=[0.0, 1.0], neighbours=[40], n_trials=2)
    model = RP3betaRecommender(cfg).fit(data)
    assert model.training_log.hyperparameters["beta"] == 0.0
    relevant = torch.tensor(np.stack([test["user_idx"].to_numpy(), test["item_idx"].to_numpy()]))
    users = torch.unique(relevant[0])

    def test_ndcg(beta: float) -> float:
        fitted = RP3betaRecommender(cfg.model_copy(update={"beta": [beta]})).fit(data)
        top, _ = fitted.recommend(users, 10, exclude=data.seen_pairs)
        return ndcg_at_k(top, users, relevant, data.n_items, 10)

    assert test_ndcg(1.0) > test_ndcg(0.0) + 0.05  # the planted disagreement is real


def test_search_spaces_accept_lists_ranges_and_single_values() -> None:
    cfg = load_config(
        overrides={
            "models.als.regularization": {"low": 1.0, "high": 100.0, "log": True},
            "models.bpr_mf.learning_rate": 0.01,
            "models.ease.l2": [100.0, 500.0],
        }
    )
    assert cfg.models.als.regularization == FloatRange(low=1.0, high=100.0, log=True)
    assert cfg.models.bpr_mf.learning_rate == [0.01] and cfg.models.ease.l2 == [100.0, 500.0]
    with pytest.raises(ValueError, match="below low"):
        load_config(overrides={"models.rp3beta.alpha": {"low": 2.0, "high": 1.0}})
    with pytest.raises(ValueError, match="log-scale range needs low > 0"):
        load_config(overrides={"models.ease.l2": {"low": 0.0, "high": 1.0, "log": True}})


def test_the_choice_per_fold_reaches_training_json_and_the_report(tmp_path, data: FoldData) -> None:
    import json

    from evaluation.summary import write_run_report
    from models.config import EASEConfig
    from models.ease import EASERecommender
    from tests.test_report_run import catalog_frame, config, per_user_frame

    logs = []
    for fold, l2 in ((1, [30.0, 300.0]), (2, [3.0])):
        log = EASERecommender(EASEConfig(l2=l2, n_trials=2)).fit(data).training_log
        logs.append({"model": "ease", "fold": fold, **log.as_dict()})
    names = ["popularity", "ease"]
    run_dir = tmp_path / "run"
    write_run_report(
        run_dir,
        config(names, tmp_path),
        per_user_frame({"popularity": 0.0, "ease": 0.05}),
        catalog_frame(names),
        pl.DataFrame({"x": [1]}),
        logs,
    )
    stored = json.loads((run_dir / "training.json").read_text())
    assert [s["hyperparameters"] for s in stored] == [logs[0]["hyperparameters"], {"l2": 3.0}]
    assert len(stored[0]["trials"]) == 2 and stored[0]["search"]["sampler"] == "grid"
    section = (run_dir / "report.md").read_text().split("## Hyperparameters chosen per fold", 1)[1]
    assert f"| ease | 1 | l2={logs[0]['hyperparameters']['l2']:.4g} |" in section
    assert "| ease | 2 | l2=3 |" in section and "| 2 (0) | grid |" in section


def test_the_paper_grade_config_widens_every_search() -> None:
    from pathlib import Path

    paper, default = load_config(Path(__file__).parents[1] / "configs" / "paper-grade.toml"), load_config()
    for section in ("ease", "itemknn", "rp3beta", "als", "bpr_mf", "lightgcn", "ngcf"):
        wide, small = getattr(paper.models, section), getattr(default.models, section)
        assert wide.n_trials > small.n_trials, section
