"""Pinning a search to what another fit chose (`tasks.train.pinned_job`): the cold-start protocol's `reuse` refits
each model once with its full-fold choice instead of searching again."""

from __future__ import annotations

import pytest
import torch

from models.base import FoldData
from models.config import GATConfig, ModelsConfig, TrainingConfig
from models.registry import build_model
from tasks.train import TrainJob, pinned_job, settings_for
from tests.synthetic import planted_fold

TRAINING = TrainingConfig(max_epochs=15, eval_every=5, patience=2, device="cpu")
MODELS = ModelsConfig(
    training=TRAINING,
    gat=GATConfig(hidden=16, heads=2, num_layers=2, batch_size=256, selection_grid={"embedding_reg": [0.0, 0.3]}),
)


@pytest.fixture(scope="module")
def data() -> FoldData:
    return planted_fold()[0]


@pytest.mark.parametrize("name", ["bpr-mf", "itemknn", "gat-id"])
def test_a_pinned_job_fits_once_and_reproduces_the_search_s_winner(name: str, data: FoldData) -> None:
    job = TrainJob(label=name, model=name, settings=settings_for(name, MODELS))
    searched = build_model(job.model, job.settings).fit(data)
    chosen = searched.training_log.selected
    assert chosen and len(searched.training_log.trials) > 1  # a real search happened

    pinned = pinned_job(job, chosen)
    assert pinned.settings != job.settings and pinned.label == job.label
    refit = build_model(pinned.model, pinned.settings).fit(data)
    assert len(refit.training_log.trials) <= 1  # one fit, no search
    users = torch.arange(data.n_users)
    assert torch.equal(
        searched.recommend(users, 10, exclude=data.train_pairs)[0],
        refit.recommend(users, 10, exclude=data.train_pairs)[0],
    )


def test_nothing_to_pin_leaves_the_job_alone() -> None:
    job = TrainJob(label="popularity", model="popularity", settings=settings_for("popularity", MODELS))
    assert pinned_job(job, {}) == job
    ease = TrainJob(label="ease", model="ease", settings=settings_for("ease", MODELS))
    assert pinned_job(ease, {}) == ease
    assert pinned_job(ease, {"l2": 250.0}).settings.ease.l2 == [250.0]
