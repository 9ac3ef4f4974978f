"""What EASE, ItemKNN and RP3beta share: an item–item weight matrix :math:`W` learned from the binary
positive-rating matrix :math:`X` and scores :math:`\\hat{Y} = X W`, with the weights' hyperparameters searched per
fold on validation NDCG@10 (models/tuning.py). Each trial is a closed-form fit of a second or less."""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from models.base import FoldData, Recommender, TrainingLog
from models.config import TrainingConfig
from models.training import validation_ndcg
from models.tuning import Axis, Report, tune


def positive_matrix(data: FoldData) -> sp.csr_matrix:
    """Users × items CSR matrix with 1 on every positive training pair (ratings at or above the threshold)."""
    users, items = data.positive_pairs[0].numpy(), data.positive_pairs[1].numpy()
    matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(data.n_users, data.n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # a duplicated pair is still one preference
    return matrix


def keep_top_k_per_row(weights: np.ndarray, k: int) -> np.ndarray:
    """A copy of the dense `weights` with all but each row's `k` largest entries set to 0 (among ties at the k-th
    largest value, which are kept is unspecified)."""
    if k >= weights.shape[1]:
        return weights.copy()
    order = np.argpartition(-weights, k - 1, axis=1)[:, :k]
    kept = np.zeros_like(weights)
    rows = np.arange(weights.shape[0])[:, None]
    kept[rows, order] = weights[rows, order]
    return kept


class ItemSimilarityRecommender(Recommender):
    """Scores :math:`\\hat{y}_{u\\cdot} = \\mathbf{x}_u^\\top W` for an item–item `W` (dense, `[n_items, n_items]`).

    Subclasses give the search space (:meth:`space`, optional :attr:`conditions`), any per-fold work shared by all
    trials (:meth:`prepare`) and :meth:`weights_for` one trial's parameters. Deterministic: no randomness besides
    the tuner's seeded sampler.
    """

    conditions: Mapping[str, tuple[str, Any]] | None = None

    def __init__(self, cfg: Any, training: TrainingConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.training = training or TrainingConfig()
        self.interactions: sp.csr_matrix | None = None
        self.weights: np.ndarray | None = None

    @abstractmethod
    def space(self) -> dict[str, Axis]:
        """The hyperparameter axes searched per fold."""

    def prepare(self, interactions: sp.csr_matrix) -> Any:
        """Work shared by every trial of a fold (e.g. a Gram matrix); passed to :meth:`weights_for`."""
        return interactions

    @abstractmethod
    def weights_for(self, prepared: Any, *args: Any, **params: Any) -> np.ndarray:
        """The dense float32 item–item weights `[n_items, n_items]` for one trial's parameters."""

    def fit(self, data: FoldData) -> ItemSimilarityRecommender:
        start = time.perf_counter()
        self.interactions = positive_matrix(data)
        prepared = self.prepare(self.interactions)

        def fit_one(params: dict[str, Any], report: Report) -> tuple[np.ndarray, TrainingLog]:
            began = time.perf_counter()
            self.weights = np.ascontiguousarray(self.weights_for(prepared, **params), dtype=np.float32)
            log = TrainingLog(
                best_validation_ndcg10=validation_ndcg(self, data),
                hyperparameters=dict(params),
                seconds=time.perf_counter() - began,
            )
            return self.weights, log

        self.weights, self.training_log = tune(
            self.name, self.space(), fit_one, data, self.training, self.cfg.n_trials, start, self.conditions
        )
        return self

    @torch.no_grad()
    def score(self, users: Tensor) -> Tensor:
        if self.interactions is None or self.weights is None:
            raise RuntimeError(f"{self.name}.score called before fit")
        rows = self.interactions[users.long().numpy()]
        return torch.from_numpy(np.asarray(rows @ self.weights, dtype=np.float32))
