"""Popularity, BPR-MF, LightGCN and the registry on tiny synthetic data with planted structure (what every model
must do is in tests/test_models_contract.py).

Two user groups, each liking one item cluster: a trained model must rank a user's held-out items of their own
cluster above the other cluster's items (pairwise AUC well above the 0.5 of random scores).
"""

from __future__ import annotations

import pytest
import torch

from e2ep.errors import ConfigError
from models.base import FoldData
from models.bpr_mf import BPRMF
from models.config import BPRMFConfig, LightGCNConfig, ModelsConfig
from models.lightgcn import LightGCNRecommender
from models.popularity import Popularity
from models.propagation import bipartite_adjacency
from models.registry import build_model, model_names
from tests.synthetic import CLUSTER, N_POP, N_USERS, planted_fold
from tests.synthetic import FAST_TRAINING as FAST


@pytest.fixture(scope="module")
def planted() -> tuple[FoldData, torch.Tensor]:
    return planted_fold()


@pytest.fixture(scope="module")
def lightgcn(planted: tuple[FoldData, torch.Tensor]) -> LightGCNRecommender:
    cfg = LightGCNConfig(num_layers=[1, 2], learning_rate=[0.02], weight_decay=[1e-4])
    return LightGCNRecommender(cfg, FAST).fit(planted[0])


def test_popularity_counts_positive_training_ratings(planted: tuple[FoldData, torch.Tensor]) -> None:
    data, _ = planted
    model = Popularity().fit(data)
    scores = model.score(torch.tensor([0, 1]))
    assert scores.shape == (2, data.n_items) and torch.equal(scores[0], scores[1])
    # the shared popular items are liked by every user; dislikes (rating 1) do not count
    assert scores[0, 2 * CLUSTER :].tolist() == [2 * N_USERS] * N_POP
    expected = torch.bincount(data.positive_pairs[1], minlength=data.n_items).float()
    assert torch.equal(scores[0], expected)
    assert model.training_log.best_validation_ndcg10 > 0


def test_lightgcn_grid_keeps_the_best_validation_trial(lightgcn: LightGCNRecommender) -> None:
    trials = lightgcn.training_log.trials
    assert len(trials) == 2 and {t["num_layers"] for t in trials} == {1, 2}
    best = max(trials, key=lambda t: t["best_validation_ndcg10"])
    assert lightgcn.training_log.best_validation_ndcg10 == best["best_validation_ndcg10"]
    assert lightgcn.module is not None and lightgcn.module.num_layers == best["num_layers"]


def test_early_stopping_stops_before_max_epochs_on_stalled_validation(planted: tuple[FoldData, torch.Tensor]) -> None:
    # A large learning rate saturates validation within a few evaluations: training must stop early.
    cfg = FAST.model_copy(update={"max_epochs": 500, "eval_every": 2, "patience": 2})
    model = BPRMF(BPRMFConfig(learning_rate=0.1, weight_decay=0.0), cfg).fit(planted[0])
    log = model.training_log
    assert log.epochs_run < 500 and log.best_epoch == log.epochs_run - 2 * 2
    from models.training import validation_ndcg

    assert validation_ndcg(model, planted[0]) == pytest.approx(log.best_validation_ndcg10)  # best was restored


def test_bipartite_adjacency_is_symmetric_normalised() -> None:
    pairs = torch.tensor([[0, 0, 1], [0, 1, 1]])  # user 0 - items 0, 1; user 1 - item 1
    adj = bipartite_adjacency(pairs, n_users=2, n_items=2).to_dense()
    assert torch.allclose(adj, adj.T)
    # edge (user 0, item 1): degrees 2 and 2 -> 1/2; (user 0, item 0): degrees 2 and 1 -> 1/sqrt(2)
    assert adj[0, 3].item() == pytest.approx(0.5) and adj[0, 2].item() == pytest.approx(2**-0.5)
    assert adj[0, 1].item() == 0 and adj[2, 3].item() == 0


def test_registry_rejects_unknown_names_listing_known_ones() -> None:
    with pytest.raises(ConfigError, match="known models: " + ", ".join(model_names())):
        build_model("sasrec", ModelsConfig())
