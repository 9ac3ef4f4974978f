"""Training utilities shared by the BPR-trained recommenders (BPR-MF, LightGCN and later the GAT).

Everything here is deterministic given a seed on CPU: negative sampling and shuffling draw from an explicit
:class:`torch.Generator`, never from global state.

The pieces:

* :func:`resolve_device` / :func:`seed_everything`,
* :class:`NegativeSampler`: uniform negatives among items the user has *not* rated positively in train,
* :func:`bpr_epoch`: one shuffled pass over `(user, pos, neg)` BPR triples,
* :func:`validation_ndcg`: full-ranking NDCG@k on the fold's validation slice,
* :class:`EarlyStopping`: keeps the best `state_dict` by validation NDCG@10 and restores it,
* :func:`train_bpr`: the loop tying them together, returning a :class:`TrainingLog`.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from e2ep.interrupt import check_stop

if TYPE_CHECKING:
    from models.config import TrainingConfig
    from models.base import FoldData, Recommender


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


def validation_ndcg(model: Recommender, data: FoldData, k: int = 10) -> float:
    """Full-ranking NDCG@k on the validation slice.

    Ranks every item except the user's `data.train_pairs`; relevant items are `data.validation_positive_pairs`.
    The mean is over users with at least one validation positive (NaN when there are none).
    """
    relevant = data.validation_positive_pairs
    if relevant.numel() == 0:
        return float("nan")
    users = torch.unique(relevant[0])
    top, _ = model.recommend(users, k, exclude=data.train_pairs)
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


@dataclass
class TrainingLog:
    """What one fit did: reported by the pipeline next to each model's metrics."""

    epochs_run: int = 0
    best_epoch: int = 0
    best_validation_ndcg10: float = float("nan")
    seconds: float = 0.0
    final_training_loss: float = float("nan")
    """Mean loss per positive pair in the last epoch run (before the best state was restored)."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    """Hyperparameter search only: one entry (hyperparameters + the fields above) per configuration tried."""
    search: dict[str, Any] = field(default_factory=dict)
    """Hyperparameter search only: sampler, budget, trials run and pruned, seconds (see models/tuning.py)."""
    selected: dict[str, Any] = field(default_factory=dict)
    """Hyperparameter search only: the value chosen on validation for every searched axis (what a later fit on a
    variant of the fold pins instead of searching again)."""
    curve: list[float] = field(default_factory=list)
    """Iterative fits: the validation NDCG@10 of every evaluation, in order (every `training.eval_every` epochs),
    so early-stopping and pruning rules can be judged from a run's `training.json`."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Fitted = TypeVar("Fitted")


def parameter_grid(**axes: list[Any]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, in order (the last axis varies fastest)."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


class Pruned(Exception):
    """Raised by a search's `report` hook to abandon a fit that trails the best one (see :func:`grid_search`)."""


class _Challenger:
    """`report` hook of a grid point fitted after others: abandons it once, after `warmup` evaluations, its best
    validation NDCG@10 so far is below the leading point's score at the same evaluation (Optuna's MedianPruner
    rule against one finished fit)."""

    def __init__(self, leader: list[float], warmup: int) -> None:
        self.leader, self.warmup, self.curve = leader, warmup, []

    def __call__(self, score: float) -> None:
        self.curve.append(round(score, 6))  # rounded as the leader's `TrainingLog.curve` is
        step = len(self.curve) - 1
        if step < self.warmup or step >= len(self.leader) or math.isnan(score):
            return
        best = max((s for s in self.curve if not math.isnan(s)), default=-math.inf)
        if best < self.leader[step]:
            raise Pruned(f"validation NDCG@10 {best:.4f} below the leader's {self.leader[step]:.4f} at evaluation "
                         f"{step + 1}")


def grid_search(grid: list[dict[str, Any]], fit_one: Callable[..., tuple[Fitted, TrainingLog]],
                started: float, pruning_warmup: int | None = None) -> tuple[Fitted, TrainingLog]:
    """Fit `fit_one(report, **params)` for every grid point in order and keep the best validation NDCG@10 (a NaN
    score loses to any number; ties keep the earlier point). Returns the winner and a log of it, with every trial
    and the total time since `started` (a `time.perf_counter()` reading).

    The first point is always fitted in full, so list the expected winner first. With `pruning_warmup` set, each
    later point races the best so far: its fit's `report(score)` hook raises :class:`Pruned` once, after that
    many evaluations, its best score trails the leader's validation curve at the same evaluation; a pruned point
    cannot win. Without it, `report` never interrupts."""
    best: tuple[float, Fitted, TrainingLog, dict[str, Any]] | None = None
    trials = []
    for params in grid:
        report = _Challenger(best[2].curve, pruning_warmup) if best is not None and pruning_warmup is not None \
            else (lambda score: None)
        try:
            fitted, log = fit_one(report, **params)
        except Pruned:
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
    return fitted, TrainingLog(epochs_run=log.epochs_run, best_epoch=log.best_epoch,
                               best_validation_ndcg10=log.best_validation_ndcg10,
                               seconds=seconds, hyperparameters=log.hyperparameters, trials=trials,
                               search={"sampler": "grid", "budget": len(grid), "trials": len(grid),
                                       "pruned": pruned, "seconds": round(seconds, 3)} if len(grid) > 1 else {},
                               selected=dict(params), curve=log.curve)


def train_bpr(
    module: torch.nn.Module,
    batch_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    evaluate: Callable[[], float],
    data: FoldData,
    cfg: TrainingConfig,
    learning_rate: float,
    device: torch.device,
    generator: torch.Generator,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    after_evaluation: Callable[[float], None] | None = None,
    negatives: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    batch_size: int | None = None,
    report: Callable[[float], None] | None = None,
) -> TrainingLog:
    """Mini-batch BPR over `data.positive_pairs`, with early stopping on `evaluate()` (validation NDCG@10).

    `batch_loss(users, pos, neg)` gets device tensors and returns the scalar loss of the batch. `evaluate` runs
    every `cfg.eval_every` epochs (and after the last epoch) with the module in eval mode under `no_grad`, then
    `after_evaluation(score)` (e.g. a learning-rate schedule). The optimizer defaults to Adam at `learning_rate`;
    `negatives(users, neg)` may replace some of the uniform negatives (CPU tensors) before each batch; `batch_size`
    defaults to `cfg.batch_size`; `report(score)` follows every evaluation (a hyperparameter search's pruning hook,
    which may raise to abandon the fit). The best state is restored at the end.
    """
    start = time.perf_counter()
    pairs = data.positive_pairs
    sampler = NegativeSampler(pairs, data.n_items)
    optimizer = optimizer or torch.optim.Adam(module.parameters(), lr=learning_rate)
    stopper = EarlyStopping(cfg.patience)
    epoch, epoch_loss = 0, float("nan")
    curve: list[float] = []
    for epoch in range(1, cfg.max_epochs + 1):
        module.train()
        total = 0.0
        for users, pos, neg in bpr_epoch(pairs, sampler, batch_size or cfg.batch_size, generator):
            if negatives is not None:
                neg = negatives(users, neg)
            optimizer.zero_grad()
            loss = batch_loss(users.to(device), pos.to(device), neg.to(device))
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(users)
        epoch_loss = total / max(pairs.shape[1], 1)
        if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs:
            module.eval()
            with torch.no_grad():
                score = evaluate()
            curve.append(round(score, 6))
            if after_evaluation is not None:
                after_evaluation(score)
            if report is not None:
                report(score)
            if stopper.step(score, epoch, module):
                break
    stopper.restore(module)
    module.eval()
    return TrainingLog(
        epochs_run=epoch,
        best_epoch=stopper.best_epoch,
        best_validation_ndcg10=stopper.best_score if stopper.best_state is not None else float("nan"),
        seconds=time.perf_counter() - start,
        final_training_loss=epoch_loss,
        curve=curve,
    )
