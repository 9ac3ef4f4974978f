"""Training shared by the iteratively trained recommenders (BPR-MF, LightGCN, NGCF, ALS, the GATs).

Everything here is deterministic given a seed on CPU: negative sampling and shuffling draw from an explicit
:class:`torch.Generator`, never from global state.

The pieces:

* :func:`resolve_device` / :func:`seed_everything`,
* :class:`NegativeSampler`: uniform negatives among items the user has *not* rated positively in train,
* :func:`bpr_epoch`: one shuffled pass over `(user, pos, neg)` BPR triples,
* :func:`validation_ndcg`: full-ranking NDCG@k on the fold's validation slice,
* :class:`EarlyStopping`: keeps the best `state_dict` by validation NDCG@10 and restores it,
* :class:`Trainer`: the loop tying them together for any :class:`TrainableModel` (one fit's module, epoch and
  scores), returning a :class:`TrainingLog`; :class:`BPRTraining` is the mini-batch BPR epoch most models share.
"""

from __future__ import annotations

import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import torch
from torch import Tensor

from e2ep.interrupt import check_stop
from models.base import FoldData, Recommender, Scores, TrainingLog, top_k

if TYPE_CHECKING:
    from models.config import TrainingConfig

__all__ = [
    "BPRTraining",
    "EarlyStopping",
    "NegativeSampler",
    "Report",
    "Trainer",
    "TrainableModel",
    "TrainingLog",
    "bpr_epoch",
    "ndcg_at_k",
    "resolve_device",
    "seed_everything",
    "validation_ndcg",
]

Report = Callable[[float], None]
"""Called after each validation evaluation with its NDCG@10: a search's pruning hook, which may raise to abandon
the fit."""


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto` → CUDA when available, else CPU; `cpu` / `cuda` as given (`cuda` without a GPU is an error)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cuda" and not torch.cuda.is_available():
        from e2ep.errors import ConfigError

        raise ConfigError("device 'cuda' was requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(spec)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); returns a CPU generator seeded with `seed` for sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


class NegativeSampler:
    r"""Uniform negatives: for a user :math:`u`, draws :math:`j \sim \mathcal{U}(\mathcal{I} \setminus \mathcal{P}_u)`.

    :math:`\mathcal{P}_u` is the user's positive training items. Sampling is vectorised: draw uniformly from all
    items, then redraw only the collisions (found by binary search on sorted `user * n_items + item` keys) until
    none remain. Users who rated every item positively have no valid negative and raise.
    """

    def __init__(self, positive_pairs: torch.Tensor, n_items: int, max_rounds: int = 100) -> None:
        self.n_items = int(n_items)
        self.max_rounds = max_rounds
        keys = positive_pairs[0].long() * self.n_items + positive_pairs[1].long()
        self._keys = torch.unique(keys)  # sorted
        counts = torch.bincount(positive_pairs[0].long()) if positive_pairs.numel() else torch.zeros(0)
        if counts.numel() and int(counts.max()) >= self.n_items:
            raise ValueError("a user is positive on every item: no negative can be sampled")

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Boolean mask: whether each `(user, item)` is a positive training pair."""
        if self._keys.numel() == 0:
            return torch.zeros_like(users, dtype=torch.bool)
        keys = users * self.n_items + items
        pos = torch.searchsorted(self._keys, keys).clamp_max(self._keys.numel() - 1)
        return self._keys[pos] == keys

    def sample(self, users: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One negative item per entry of `users` (CPU long tensors)."""
        users = users.long()
        items = torch.randint(self.n_items, users.shape, generator=generator)
        bad = self.is_positive(users, items).nonzero().flatten()
        for _ in range(self.max_rounds):
            if bad.numel() == 0:
                return items
            items[bad] = torch.randint(self.n_items, bad.shape, generator=generator)
            bad = bad[self.is_positive(users[bad], items[bad])]
        raise RuntimeError(f"negative sampling did not converge in {self.max_rounds} rounds")


def bpr_epoch(
    positive_pairs: torch.Tensor,
    sampler: NegativeSampler,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield `(users, pos_items, neg_items)` batches covering every positive pair once, in shuffled order.

    Negatives are drawn fresh each epoch (one per positive pair). Tensors are on the CPU.
    """
    n = positive_pairs.shape[1]
    order = torch.randperm(n, generator=generator)
    users, pos = positive_pairs[0][order].long(), positive_pairs[1][order].long()
    neg = sampler.sample(users, generator)
    for start in range(0, n, batch_size):
        check_stop()  # SIGINT/SIGTERM stop training between batches
        end = start + batch_size
        yield users[start:end], pos[start:end], neg[start:end]


def ndcg_at_k(top_items: torch.Tensor, users: torch.Tensor, relevant: torch.Tensor, n_items: int, k: int) -> float:
    r"""Mean binary NDCG@k over `users`, given their ranked `top_items` `[len(users), >=k]`.

    :math:`\mathrm{DCG@k} = \sum_{r=1}^{k} \mathrm{rel}_r / \log_2(r+1)`, normalised by the ideal DCG with
    :math:`\min(|\mathrm{Rel}_u|, k)` hits. `relevant` is a `[2, E]` (user, item) tensor; every user passed must
    have at least one relevant item.
    """
    if len(users) == 0 or relevant.numel() == 0:
        return float("nan")
    relevant = relevant.long()
    keys = torch.unique(relevant[0] * n_items + relevant[1])
    top = top_items[:, :k].long()
    query = users.long().unsqueeze(1) * n_items + top
    pos = torch.searchsorted(keys, query).clamp_max(keys.numel() - 1)
    hits = (keys[pos] == query).float()
    discounts = 1.0 / torch.log2(torch.arange(2, top.shape[1] + 2, dtype=torch.float))
    dcg = (hits * discounts).sum(1)
    n_rel = torch.bincount(relevant[0], minlength=int(users.max()) + 1)[users.long()].clamp_max(top.shape[1])
    idcg = torch.cumsum(discounts, 0)[n_rel - 1]
    return float((dcg / idcg).mean())


def validation_ndcg(model: Recommender | Scores, data: FoldData, k: int = 10) -> float:
    """Full-ranking NDCG@k on the validation slice, of a fitted recommender or of a score function (a module in
    training, `TrainableModel.scorer`).

    Ranks every item except the user's `data.train_pairs`; relevant items are `data.validation_positive_pairs`.
    The mean is over users with at least one validation positive (NaN when there are none).
    """
    relevant = data.validation_positive_pairs
    if relevant.numel() == 0:
        return float("nan")
    users = torch.unique(relevant[0])
    score = model.score if isinstance(model, Recommender) else model
    top, _ = top_k(score, users, k, exclude=data.train_pairs)
    return ndcg_at_k(top, users, relevant, data.n_items, k)


class EarlyStopping:
    """Track validation NDCG@10, keep a CPU copy of the best `state_dict`, and say when to stop.

    Call :meth:`step` after every evaluation; it returns True once `patience` evaluations in a row failed to
    improve on the best score (by more than `min_delta`). :meth:`restore` loads the best state back. A NaN score
    (no validation positives) never improves, so the model trains for `max_epochs` and keeps its last state.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best_score = -math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_evaluations = 0

    def step(self, score: float, epoch: int, module: torch.nn.Module) -> bool:
        """Record `score` at `epoch`; snapshot `module` if it is the best so far. Returns whether to stop."""
        if not math.isnan(score) and score > self.best_score + self.min_delta:
            self.best_score, self.best_epoch, self.bad_evaluations = score, epoch, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
            return False
        self.bad_evaluations += 1
        return self.bad_evaluations >= self.patience

    def restore(self, module: torch.nn.Module) -> None:
        """Load the best snapshot into `module` (no-op when none was taken)."""
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


class TrainableModel(ABC, Generic[ModuleT]):
    """One fit of an iteratively trained model, driven by :class:`Trainer` (LensKit's `setup` / `train_epoch` /
    evaluate / `finalize`): the model builds its module, runs one epoch and scores users through the module being
    trained; the trainer owns the loop, the evaluation schedule, early stopping and the :class:`TrainingLog`.

    Hooks that a training loop would otherwise grow as keyword arguments (an optimizer, a schedule, the negatives)
    are methods of the subclass."""

    module: ModuleT
    """The trained state: what early stopping snapshots and restores (set by :meth:`setup`)."""

    @abstractmethod
    def setup(self, data: FoldData, generator: torch.Generator) -> None:
        """Build `module` (and optimizer, samplers) for `data`. Runs right after the trainer seeded every RNG, so
        the module's initialisation draws from the seed; `generator` is the fit's stream for sampling."""

    @abstractmethod
    def train_epoch(self) -> float:
        """One pass over the training data (module in train mode); the mean loss per positive pair, or NaN."""

    @abstractmethod
    def scorer(self) -> Scores:
        """Scores of users by the module as it is now, for one validation evaluation (eval mode, no grad)."""

    def after_evaluation(self, score: float) -> None:
        """Follows every evaluation with its validation NDCG@10 (e.g. a learning-rate schedule)."""

    def finalize(self, log: TrainingLog) -> None:
        """After training, with the best state restored in eval mode: e.g. record hyperparameters in `log`."""


class Trainer:
    """Trains a :class:`TrainableModel` on one fold with early stopping on validation NDCG@10.

    Seeds every RNG (`cfg.seed`, :func:`seed_everything`) and sets the model up, then runs up to `cfg.max_epochs`
    epochs; every `cfg.eval_every` epochs (and after the last) it evaluates on the validation slice, calls the
    model's `after_evaluation(score)` and the `report(score)` hook (a search's pruner, which may raise to abandon
    the fit), and stops after `cfg.patience` evaluations without improvement. The best state is restored at the
    end."""

    def __init__(self, data: FoldData, cfg: TrainingConfig, report: Report | None = None) -> None:
        self.data, self.cfg, self.report = data, cfg, report

    def evaluate(self, model: TrainableModel[Any]) -> float:
        """Validation NDCG@10 of the module as it is now."""
        model.module.eval()
        with torch.no_grad():
            return validation_ndcg(model.scorer(), self.data)

    def fit(self, model: TrainableModel[Any]) -> TrainingLog:
        """Train `model` in place; returns the log (epochs, best epoch and score, last loss, validation curve)."""
        cfg = self.cfg
        start = time.perf_counter()
        model.setup(self.data, seed_everything(cfg.seed))
        stopper = EarlyStopping(cfg.patience)
        epoch, epoch_loss = 0, float("nan")
        curve: list[float] = []
        for epoch in range(1, cfg.max_epochs + 1):
            model.module.train()
            epoch_loss = model.train_epoch()
            if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs:
                score = self.evaluate(model)
                curve.append(round(score, 6))
                model.after_evaluation(score)
                if self.report is not None:
                    self.report(score)
                if stopper.step(score, epoch, model.module):
                    break
        stopper.restore(model.module)
        model.module.eval()
        log = TrainingLog(
            epochs_run=epoch,
            best_epoch=stopper.best_epoch,
            best_validation_ndcg10=stopper.best_score if stopper.best_state is not None else float("nan"),
            seconds=time.perf_counter() - start,
            final_training_loss=epoch_loss,
            curve=curve,
        )
        with torch.no_grad():
            model.finalize(log)
        return log


class BPRTraining(TrainableModel[ModuleT]):
    r"""Mini-batch BPR over the fold's positive pairs: each epoch visits every positive once, shuffled, with a fresh
    uniform negative among the user's non-positive items (:func:`bpr_epoch`), and takes an optimizer step on
    :meth:`batch_loss` per batch. Subclasses give the module and the loss; the optimizer (Adam at
    `learning_rate`) and the negatives may be overridden."""

    data: FoldData
    generator: torch.Generator
    sampler: NegativeSampler
    optimizer: torch.optim.Optimizer

    def __init__(self, learning_rate: float, batch_size: int, device: torch.device) -> None:
        self.learning_rate, self.batch_size, self.device = learning_rate, batch_size, device

    @abstractmethod
    def build_module(self, data: FoldData) -> ModuleT:
        """A fresh module on `device` (its initialisation draws from torch's freshly seeded global RNG)."""

    @abstractmethod
    def batch_loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """The scalar loss of a batch of `(user, positive item, negative item)` device tensors."""

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.module.parameters(), lr=self.learning_rate)

    def negatives(self, users: Tensor, neg: Tensor) -> Tensor:
        """The batch's negatives (CPU tensors), given the uniform ones: those by default."""
        return neg

    def setup(self, data: FoldData, generator: torch.Generator) -> None:
        self.data, self.generator = data, generator
        self.module = self.build_module(data)
        self.sampler = NegativeSampler(data.positive_pairs, data.n_items)
        self.optimizer = self.make_optimizer()

    def train_epoch(self) -> float:
        pairs, total = self.data.positive_pairs, 0.0
        for users, pos, neg in bpr_epoch(pairs, self.sampler, self.batch_size, self.generator):
            neg = self.negatives(users, neg)
            self.optimizer.zero_grad()
            loss = self.batch_loss(users.to(self.device), pos.to(self.device), neg.to(self.device))
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(users)
        return total / max(pairs.shape[1], 1)
