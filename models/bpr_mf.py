"""BPR matrix factorisation (Rendle et al., 2009), trained with Adam and early stopping on validation NDCG@10."""

from __future__ import annotations

import time
from typing import ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F

from e2ep.configbase import Strict
from models.base import FoldData, Recommender, Scores, TrainingLog
from models.config import BPRMFConfig, TrainingConfig
from models.training import BPRTraining, Trainer, resolve_device
from models.tuning import Axis, Report, tune


class MFModule(torch.nn.Module):
    r"""Dot-product factorisation :math:`\hat{y}_{ui} = \mathbf{p}_u^\top \mathbf{q}_i`."""

    def __init__(self, n_users: int, n_items: int, embedding_dim: int) -> None:
        super().__init__()
        self.user = torch.nn.Embedding(n_users, embedding_dim)
        self.item = torch.nn.Embedding(n_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.user.weight)
        torch.nn.init.xavier_uniform_(self.item.weight)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Scores of the `(users[k], items[k])` pairs."""
        return (self.user(users) * self.item(items)).sum(-1)

    def bpr_loss(self, users: Tensor, pos: Tensor, neg: Tensor, lambda_reg: float) -> Tensor:
        r"""Mean BPR loss with L2 on the batch's embeddings (the same scaling as PyG's `BPRLoss`):

        .. math::
            \mathcal{L} = -\frac{1}{B}\sum_{(u,i,j)} \ln\sigma(\hat{y}_{ui} - \hat{y}_{uj})
            + \frac{\lambda}{B}\left(\lVert P_B\rVert^2 + \lVert Q_{B,i}\rVert^2 + \lVert Q_{B,j}\rVert^2\right)
        """
        u, i, j = self.user(users), self.item(pos), self.item(neg)
        log_prob = F.logsigmoid((u * i).sum(-1) - (u * j).sum(-1)).mean()
        reg = lambda_reg * (u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum()) / users.numel()
        return -log_prob + reg

    def all_scores(self, users: Tensor) -> Tensor:
        """Scores `[len(users), n_items]`."""
        return self.user(users) @ self.item.weight.T


class MFTraining(BPRTraining[MFModule]):
    """One BPR-MF fit: Adam on :meth:`MFModule.bpr_loss` at one `(learning_rate, weight_decay)`."""

    def __init__(
        self, embedding_dim: int, learning_rate: float, weight_decay: float, batch_size: int, device: torch.device
    ) -> None:
        super().__init__(learning_rate, batch_size, device)
        self.embedding_dim, self.weight_decay = embedding_dim, weight_decay

    def build_module(self, data: FoldData) -> MFModule:
        return MFModule(data.n_users, data.n_items, self.embedding_dim).to(self.device)

    def batch_loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        return self.module.bpr_loss(users, pos, neg, self.weight_decay)

    def scorer(self) -> Scores:
        module, device = self.module, self.device
        return lambda users: module.all_scores(users.long().to(device))

    def finalize(self, log: TrainingLog) -> None:
        log.hyperparameters = {
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "embedding_dim": self.embedding_dim,
        }


class BPRMF(Recommender):
    """BPR-MF on positive training ratings; uniform negatives among the user's non-positive items. Learning rate
    and weight decay are searched per fold on validation NDCG@10 (models/tuning.py)."""

    name: ClassVar[str] = "bpr-mf"
    config_field: ClassVar[str | None] = "bpr_mf"
    config_class: ClassVar[type[Strict] | None] = BPRMFConfig

    def __init__(self, cfg: BPRMFConfig | None = None, training: TrainingConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or BPRMFConfig()
        self.training = training or TrainingConfig()
        self.device = resolve_device(self.training.device)
        self.module: MFModule | None = None

    def space(self) -> dict[str, Axis]:
        """The hyperparameter axes searched per fold."""
        return {"learning_rate": self.cfg.learning_rate, "weight_decay": self.cfg.weight_decay}

    def fit(self, data: FoldData) -> BPRMF:
        start = time.perf_counter()
        self.module, self.training_log = tune(
            self.name,
            self.space(),
            lambda params, report: self._fit_one(data, report, **params),
            data,
            self.training,
            self.cfg.n_trials,
            start,
        )
        return self

    def _fit_one(
        self, data: FoldData, report: Report, learning_rate: float, weight_decay: float
    ) -> tuple[MFModule, TrainingLog]:
        fit = MFTraining(
            self.training.embedding_dim, learning_rate, weight_decay, self.training.batch_size, self.device
        )
        log = Trainer(data, self.training, report).fit(fit)
        return fit.module, log

    @torch.no_grad()
    def score(self, users: Tensor) -> Tensor:
        if self.module is None:
            raise RuntimeError("BPRMF.score called before fit")
        return self.module.all_scores(users.long().to(self.device))
