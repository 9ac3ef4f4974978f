"""The contract every registered recommender keeps (`models.registry.MODELS`), on the planted two-cluster fold of
tests/synthetic.py: it declares a config section of `ModelsConfig`, learns the planted structure, never recommends
a seen item, fits the same for the same seed and reports what it did in `training_log`.

Model-specific behaviour (search spaces, layers, losses, backends) is tested in tests/test_models_*.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from models.base import FoldData, Recommender, TrainingLog
from models.config import ModelsConfig, TrainingConfig
from models.popularity import Popularity
from models.registry import MODELS
from tests.synthetic import CLUSTER, N_POP, assert_recommends_unseen_best_first, held_out_auc, planted_fold

TRAINING = TrainingConfig(max_epochs=30, eval_every=5, patience=2, batch_size=64, embedding_dim=16, device="cpu")
SMALL: dict[str, dict[str, Any]] = {
    # one configuration per trained model, sized for the tiny fold (a few seconds per fit)
    "bpr_mf": {"learning_rate": [0.02], "weight_decay": [1e-4], "n_trials": 1},
    "lightgcn": {"num_layers": [2], "learning_rate": [0.02], "weight_decay": [1e-4], "n_trials": 1},
    "ngcf": {"num_layers": [2], "learning_rate": [0.02], "weight_decay": [1e-4], "n_trials": 1},
    "als": {"factors": [8], "regularization": [0.1], "alpha": [5.0], "iterations": 15, "num_threads": 1, "n_trials": 1},
    "ease": {"n_trials": 4},
    "itemknn": {"n_trials": 4, "neighbours": [5, 20]},
    "rp3beta": {"n_trials": 4, "neighbours": [5, 20]},
    "gat": {"hidden": 16, "heads": 2, "num_layers": 2, "batch_size": 256, "selection_grid": {}},
    "gat_paper": {"hidden": 16, "layer_heads": [2, 2, 1], "learning_rate": 0.01},
}


def _settings() -> ModelsConfig:
    base = ModelsConfig(training=TRAINING)
    return base.model_copy(
        update={field: getattr(base, field).model_copy(update=update) for field, update in SMALL.items()}
    )


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def planted() -> tuple[FoldData, torch.Tensor]:
    """The planted fold with 8-d profile features: a direction per taste group plus as much noise."""
    data, held = planted_fold()
    g = torch.Generator().manual_seed(0)
    direction = torch.tensor([[1.0] * 4 + [0.0] * 4, [0.0] * 4 + [1.0] * 4, [0.5] * 8])
    item_group = torch.tensor([0] * CLUSTER + [1] * CLUSTER + [2] * N_POP)
    features = lambda group: direction[group] + torch.randn(len(group), 8, generator=g)  # noqa: E731
    return dataclasses.replace(
        data, user_features=features(torch.arange(data.n_users) % 2), item_features=features(item_group)
    ), held


def _fit(cls: type[Recommender], data: FoldData, seed: int = 0) -> Recommender:
    cfg = _settings()
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"seed": seed})})
    if not cls.uses_features:  # a model that reads no profiles must not need them
        data = dataclasses.replace(data, user_features=None, item_features=None)
    return cls.from_config(cfg).fit(data)


@pytest.fixture(scope="module", params=MODELS, ids=lambda cls: cls.name)
def fitted(request: pytest.FixtureRequest, planted: tuple[FoldData, torch.Tensor]) -> Recommender:
    return _fit(request.param, planted[0])


@pytest.mark.parametrize("cls", MODELS, ids=lambda cls: cls.name)
def test_declares_its_config_section(cls: type[Recommender]) -> None:
    cfg = ModelsConfig()
    assert (cls.config_field is None) == (cls.config_class is None)
    model = cls.from_config(cfg)
    assert type(model) is cls and model.name == cls.name
    assert model.training_log.epochs_run == 0 and not model.training_log.trials  # an empty log before fitting
    if cls.config_field is not None:
        assert cls.config_class is not None
        section = getattr(cfg, cls.config_field)
        assert isinstance(section, cls.config_class) and model.cfg == section
        assert cls.config_field in ModelsConfig.model_fields


def test_learns_the_planted_structure(fitted: Recommender, planted: tuple[FoldData, torch.Tensor]) -> None:
    data, held = planted
    if isinstance(fitted, Popularity):  # not personalised: the items every user likes rank first
        scores = fitted.score(torch.tensor([0, 1]))
        assert bool((scores[:, 2 * CLUSTER :].min(1).values > scores[:, : 2 * CLUSTER].max(1).values).all())
        return
    assert held_out_auc(fitted, data, held) > 0.8  # random scores give 0.5, popularity about as much


def test_recommends_unseen_items_best_first(fitted: Recommender, planted: tuple[FoldData, torch.Tensor]) -> None:
    assert_recommends_unseen_best_first(fitted, planted[0])


def test_yields_a_training_log(fitted: Recommender) -> None:
    log = fitted.training_log
    assert isinstance(log, TrainingLog) and log.best_validation_ndcg10 > 0.2 and log.seconds > 0
    if log.epochs_run:  # iteratively trained: early stopping kept an evaluated epoch
        assert 0 < log.best_epoch <= log.epochs_run and log.hyperparameters


def test_same_seed_same_scores(fitted: Recommender, planted: tuple[FoldData, torch.Tensor]) -> None:
    data, _ = planted
    users = torch.arange(data.n_users)
    again = _fit(type(fitted), data)
    assert torch.equal(again.score(users), fitted.score(users))
    assert again.training_log.hyperparameters == fitted.training_log.hyperparameters
    if fitted.training_log.epochs_run:  # trained from a random start: another seed starts elsewhere
        assert not torch.equal(_fit(type(fitted), data, seed=1).score(users), fitted.score(users))
