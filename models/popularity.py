"""Most-popular baseline: every user gets the same ranking, by number of positive training ratings."""

from __future__ import annotations

import time
from typing import ClassVar

import torch

from models.base import FoldData, Recommender, TrainingLog
from models.training import validation_ndcg


class Popularity(Recommender):
    r"""Non-personalised baseline: :math:`s(u, i) = |\{v : r_{vi} \ge \tau_+\}|` on the fold's training ratings.

    Ties are broken by item index (via `topk`), so the ranking is deterministic.
    """

    name: ClassVar[str] = "popularity"

    def __init__(self) -> None:
        super().__init__()
        self.item_scores: torch.Tensor | None = None

    def fit(self, data: FoldData) -> Popularity:
        start = time.perf_counter()
        items = data.positive_pairs[1]
        self.item_scores = torch.bincount(items, minlength=data.n_items).float()
        self.training_log = TrainingLog(best_validation_ndcg10=validation_ndcg(self, data))
        self.training_log.seconds = time.perf_counter() - start
        return self

    def score(self, users: torch.Tensor) -> torch.Tensor:
        if self.item_scores is None:
            raise RuntimeError("Popularity.score called before fit")
        return self.item_scores.unsqueeze(0).expand(len(users), -1)
