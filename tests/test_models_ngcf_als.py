"""NGCF and ALS on the planted two-cluster fold of tests/synthetic.py, their configs and registration."""

from __future__ import annotations

import warnings

import pytest
import torch
from pydantic import ValidationError

from flows.config import load_config
from models.als import ALSRecommender, confidence_matrix
from models.base import FoldData
from models.config import ALSConfig, ModelsConfig, NGCFConfig
from models.ngcf import LEAKY_SLOPE, NGCFModule, NGCFRecommender, drop_adjacency_entries
from models.propagation import bipartite_adjacency
from models.registry import build_model
from tasks.train import settings_for
from tests.synthetic import FAST_TRAINING, planted_fold

NGCF_FAST = NGCFConfig(num_layers=[2], learning_rate=[0.02], weight_decay=[1e-4])
ALS_FAST = ALSConfig(factors=[8], regularization=[0.1, 1.0], alpha=[5.0], iterations=15, num_threads=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def planted() -> tuple[FoldData, torch.Tensor]:
    return planted_fold()


@pytest.fixture(scope="module")
def als(planted: tuple[FoldData, torch.Tensor]) -> ALSRecommender:
    import implicit.utils

    implicit.utils._checked_blas_config = False  # implicit warns about a threaded BLAS once per process
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the BLAS thread limit must keep that warning away
        return ALSRecommender(ALS_FAST, FAST_TRAINING).fit(planted[0])


def test_als_keeps_its_best_validation_sweep(als: ALSRecommender, planted: tuple[FoldData, torch.Tensor]) -> None:
    from models.training import validation_ndcg

    log = als.training_log
    assert log.hyperparameters["iterations"] == log.best_epoch <= ALS_FAST.iterations
    assert validation_ndcg(als, planted[0]) == pytest.approx(log.best_validation_ndcg10)


def test_node_dropout_draws_the_same_for_the_same_seed(planted: tuple[FoldData, torch.Tensor]) -> None:
    data, _ = planted
    users = torch.arange(data.n_users)

    def run(seed: int) -> torch.Tensor:
        training = FAST_TRAINING.model_copy(update={"max_epochs": 10, "seed": seed})
        return NGCFRecommender(NGCF_FAST.model_copy(update={"node_dropout": 0.2}), training).fit(data).score(users)

    first = run(3)
    assert torch.equal(first, run(3))
    assert not torch.allclose(first, run(4))


def test_ngcf_layer_matches_the_propagation_rule() -> None:
    torch.manual_seed(0)
    pairs = torch.tensor([[0, 0, 1, 2], [0, 1, 1, 2]])
    adj = bipartite_adjacency(pairs, n_users=3, n_items=3)
    module = NGCFModule(6, 4, num_layers=1, message_dropout=0.5).eval()  # no dropout in eval mode
    torch.nn.init.normal_(module.w1[0].bias)
    e0 = module.embedding.weight
    lap = adj.to_dense()
    side = lap @ e0
    e1 = torch.nn.functional.leaky_relu(
        (side + e0) @ module.w1[0].weight.T
        + module.w1[0].bias
        + (side * e0) @ module.w2[0].weight.T
        + module.w2[0].bias,
        LEAKY_SLOPE,
    )
    out = module(adj)
    assert out.shape == (6, 8)
    assert torch.allclose(out[:, :4], e0) and torch.allclose(out[:, 4:], torch.nn.functional.normalize(e1))


def test_node_dropout_zeroes_entries_and_keeps_the_expected_operator() -> None:
    pairs = torch.stack([torch.arange(200).repeat_interleave(5), torch.arange(1000) % 50])
    adj = bipartite_adjacency(pairs, n_users=200, n_items=50)
    torch.manual_seed(0)
    dropped = drop_adjacency_entries(adj, 0.3)
    kept = dropped.values() != 0
    assert 0.65 < kept.float().mean().item() < 0.75
    assert torch.allclose(dropped.values()[kept], adj.values()[kept] / 0.7)
    assert drop_adjacency_entries(adj, 0.0) is adj


def test_als_confidence_is_one_plus_alpha_on_positives(planted: tuple[FoldData, torch.Tensor]) -> None:
    data, _ = planted
    matrix = confidence_matrix(data.positive_pairs, data.n_users, data.n_items, alpha=4.0)
    assert matrix.shape == (data.n_users, data.n_items) and matrix.nnz == data.positive_pairs.shape[1]
    assert set(matrix.data.tolist()) == {5.0}
    assert matrix[0, int(data.negative_pairs[1][data.negative_pairs[0] == 0][0])] == 0  # dislikes are absent


def test_registry_and_settings_give_each_model_its_section() -> None:
    cfg = ModelsConfig(names=["ngcf", "als"], ngcf=NGCF_FAST, als=ALS_FAST)
    ngcf, als = build_model("ngcf", cfg), build_model("als", cfg)
    assert isinstance(ngcf, NGCFRecommender) and ngcf.cfg == NGCF_FAST and ngcf.training == cfg.training
    assert isinstance(als, ALSRecommender) and als.cfg == ALS_FAST
    assert settings_for("ngcf", cfg).ngcf == NGCF_FAST and settings_for("ngcf", cfg).als == ALSConfig()
    assert settings_for("als", cfg).als == ALS_FAST and settings_for("als", cfg).ngcf == NGCFConfig()
    assert {"ngcf", "als"} <= set(ModelsConfig().names)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"models.ngcf.num_layers": []}, "should have at least 1 item"),
        ({"models.ngcf.num_layers": [0]}, "greater than or equal to 1"),
        ({"models.ngcf.message_dropout": 1.0}, "less than 1"),
        ({"models.als.alpha": [-1.0]}, "greater than or equal to 0"),
        ({"models.als.factors": []}, "should have at least 1 item"),
        ({"models.lightgcn.learning_rate": [0.0]}, "greater than 0"),
        ({"models.als.iterations": 0}, "greater than or equal to 1"),
        ({"models.als.factor": [8]}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_rejected_clearly(override: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_config(overrides=override)
