"""Unit tests of models/training.py: sampling, batching, NDCG, early stopping, devices."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch

from models.base import FoldData, Recommender, Scores
from models.config import TrainingConfig
from models.training import (
    BPRTraining,
    EarlyStopping,
    NegativeSampler,
    TrainableModel,
    Trainer,
    bpr_epoch,
    ndcg_at_k,
    resolve_device,
    seed_everything,
    validation_ndcg,
)


def _fold(
    train: list[tuple[int, int, float]], validation: list[tuple[int, int, float]], n_users: int, n_items: int
) -> FoldData:
    def frame(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
        return pl.DataFrame(
            rows, schema={"user_idx": pl.Int64, "item_idx": pl.Int64, "rating": pl.Float64}, orient="row"
        )

    return FoldData(n_users=n_users, n_items=n_items, train=frame(train), validation=frame(validation))


class _FixedScores(Recommender):
    name = "fixed"

    def __init__(self, scores: torch.Tensor) -> None:
        self.scores = scores

    def fit(self, data: FoldData) -> _FixedScores:
        return self

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.scores[users]


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_negative_sampler_avoids_positives_and_covers_the_rest() -> None:
    n_items = 10
    # user 0 likes items 0..7 (only 8, 9 valid negatives), user 1 likes item 3.
    pairs = torch.tensor([[0] * 8 + [1], list(range(8)) + [3]])
    sampler = NegativeSampler(pairs, n_items)
    gen = seed_everything(0)
    users = torch.tensor([0] * 2000 + [1] * 2000)
    neg = sampler.sample(users, gen)
    assert set(neg[:2000].tolist()) == {8, 9}
    assert set(neg[2000:].tolist()) == set(range(10)) - {3}
    assert not sampler.is_positive(users, neg).any()


def test_negative_sampler_rejects_user_positive_on_every_item() -> None:
    with pytest.raises(ValueError):
        NegativeSampler(torch.tensor([[0, 0], [0, 1]]), n_items=2)


def test_bpr_epoch_covers_each_positive_once_shuffled() -> None:
    pairs = torch.stack([torch.arange(50) % 5, torch.arange(50) % 7 + 3])
    sampler = NegativeSampler(pairs, n_items=20)
    batches = list(bpr_epoch(pairs, sampler, batch_size=16, generator=seed_everything(1)))
    assert [len(b[0]) for b in batches] == [16, 16, 16, 2]
    users = torch.cat([b[0] for b in batches])
    pos = torch.cat([b[1] for b in batches])
    neg = torch.cat([b[2] for b in batches])
    assert sorted(zip(users.tolist(), pos.tolist(), strict=True)) == sorted(zip(*pairs.tolist(), strict=True))
    assert not torch.equal(users, pairs[0])  # shuffled
    assert not sampler.is_positive(users, neg).any()


def test_ndcg_at_k_by_hand() -> None:
    top = torch.tensor([[0, 1, 2], [2, 1, 0]])
    users = torch.tensor([0, 1])
    relevant = torch.tensor([[0, 1, 1], [1, 0, 1]])  # user 0: {1}; user 1: {0, 1}
    # user 0: hit at rank 2 -> (1/log2 3) / 1 ; user 1: hits at ranks 2,3 -> (1/log2 3 + 1/2) / (1 + 1/log2 3)
    u0 = 1 / math.log2(3)
    u1 = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(top, users, relevant, n_items=3, k=3) == pytest.approx((u0 + u1) / 2)


def test_validation_ndcg_excludes_train_and_skips_users_without_positives() -> None:
    # user 0 trained on item 0 (top scored: must be skipped), validation positive item 1 -> perfect.
    # user 1 has only a neutral validation rating -> not averaged. user 2: positive item 3 ranked 2nd of 4.
    data = _fold(
        train=[(0, 0, 5.0), (1, 0, 4.0), (2, 2, 1.0)],
        validation=[(0, 1, 5.0), (1, 2, 3.0), (2, 3, 4.0)],
        n_users=3,
        n_items=4,
    )
    scores = torch.tensor([[9.0, 8.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 9.0, 10.0, 8.0]])
    got = validation_ndcg(_FixedScores(scores), data, k=10)
    assert got == pytest.approx((1.0 + 1 / math.log2(3)) / 2)


def test_early_stopping_snapshot_and_patience() -> None:
    module = torch.nn.Linear(1, 1)
    stopper = EarlyStopping(patience=2)
    with torch.no_grad():
        module.weight.fill_(1.0)
    assert not stopper.step(0.5, 1, module)
    with torch.no_grad():
        module.weight.fill_(2.0)
    assert not stopper.step(0.4, 2, module)
    assert stopper.step(float("nan"), 3, module)
    stopper.restore(module)
    assert module.weight.item() == 1.0 and stopper.best_epoch == 1 and stopper.best_score == 0.5


class _EmbeddingBPR(BPRTraining[torch.nn.Embedding]):
    """Users 0-3 and items 4-11 of one embedding table."""

    def build_module(self, data: FoldData) -> torch.nn.Embedding:
        return torch.nn.Embedding(data.n_users + data.n_items, 4)

    def batch_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        e = self.module.weight
        return -torch.nn.functional.logsigmoid((e[users] * e[pos + 4]).sum(-1) - (e[users] * e[neg + 4]).sum(-1)).mean()

    def scorer(self) -> Scores:
        e = self.module.weight
        return lambda users: e[users] @ e[4:].T


class _ScriptedTrainer(Trainer):
    """Validation scores from a script; snapshots the weights at every evaluation."""

    def __init__(self, data: FoldData, cfg: TrainingConfig, scores: list[float]) -> None:
        self.reported: list[float] = []
        super().__init__(data, cfg, report=self.reported.append)
        self.scripted, self.snapshots = iter(scores), {}

    def evaluate(self, model: TrainableModel) -> float:
        self.snapshots[2 * (len(self.snapshots) + 1)] = model.module.weight.detach().clone()
        return next(self.scripted)


def test_trainer_stops_on_stalled_validation_and_restores_best_epoch() -> None:
    data = _fold(
        train=[(u, i, 5.0) for u in range(4) for i in range(u, u + 3)],
        validation=[(u, (u + 4) % 8, 5.0) for u in range(4)],
        n_users=4,
        n_items=8,
    )
    cfg = TrainingConfig(max_epochs=100, eval_every=2, patience=3, batch_size=4)
    model = _EmbeddingBPR(0.1, cfg.batch_size, torch.device("cpu"))
    scripted = [0.1, 0.3, 0.2, 0.2, 0.25, 0.9, 0.9]
    trainer = _ScriptedTrainer(data, cfg, scripted)
    log = trainer.fit(model)
    assert log.epochs_run == 10 and log.best_epoch == 4 and log.best_validation_ndcg10 == pytest.approx(0.3)
    assert torch.equal(model.module.weight, trainer.snapshots[4])
    assert not torch.equal(model.module.weight, trainer.snapshots[10])
    assert log.curve == scripted[:5] == trainer.reported and log.final_training_loss > 0
    assert not model.module.training  # left in eval mode


def test_trainer_scores_validation_through_the_module_in_training() -> None:
    data = _fold(
        train=[(u, i, 5.0) for u in range(4) for i in range(u, u + 3)],
        validation=[(u, (u + 4) % 8, 5.0) for u in range(4)],
        n_users=4,
        n_items=8,
    )
    cfg = TrainingConfig(max_epochs=4, eval_every=2, patience=5, batch_size=4)
    model = _EmbeddingBPR(0.1, cfg.batch_size, torch.device("cpu"))
    log = Trainer(data, cfg).fit(model)
    assert log.epochs_run == 4 and len(log.curve) == 2
    assert validation_ndcg(model.scorer(), data) == pytest.approx(log.best_validation_ndcg10)


def test_the_symmetric_sparse_product_has_torchs_gradient():
    import torch

    from models.propagation import bipartite_adjacency, symmetric_spmm

    g = torch.Generator().manual_seed(0)
    pairs = torch.stack([torch.randint(0, 7, (30,), generator=g), torch.randint(0, 9, (30,), generator=g)])
    adj = bipartite_adjacency(pairs, 7, 9)
    x = torch.randn(16, 4, generator=g, requires_grad=True)
    y = torch.randn(16, 4, generator=g)
    (symmetric_spmm(adj, symmetric_spmm(adj, x)) * y).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    dense = adj.to_dense()
    (dense @ (dense @ x) * y).sum().backward()
    assert torch.allclose(ours, x.grad, atol=1e-6)
    assert torch.allclose(symmetric_spmm(adj, x), dense @ x, atol=1e-6)
