"""The one small interface every recommender implements, and the fold data it is fitted on.

Evaluation only ever calls :meth:`Recommender.fit` and :meth:`Recommender.recommend`, so baselines, the GAT and
the rerankers are interchangeable there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl
import torch

from e2ep.configbase import Strict

if TYPE_CHECKING:
    from models.config import ModelsConfig

Scores = Callable[[torch.Tensor], torch.Tensor]
"""Scores `[len(users), n_items]` (higher is better) of the given `user_idx` values: a fitted recommender's
`score`, or a module's while it trains (`models.training.TrainableModel.scorer`)."""


@dataclass(frozen=True)
class FoldData:
    """One fold's training side, with contiguous 0-based `user_idx` / `item_idx` ids.

    `train` holds the ratings a model may fit on; `validation` the per-user held-out slice used for early stopping
    and model selection. Both are polars frames with columns `user_idx`, `item_idx`, `rating`. Test data is never
    part of this object.
    """

    n_users: int
    n_items: int
    train: pl.DataFrame
    validation: pl.DataFrame
    positive_threshold: float = 4.0
    negative_threshold: float = 2.0
    item_features: torch.Tensor | None = field(default=None, compare=False)
    user_features: torch.Tensor | None = field(default=None, compare=False)

    def _pairs(self, frame: pl.DataFrame) -> torch.Tensor:
        return torch.from_numpy(
            np.stack([frame["user_idx"].to_numpy(), frame["item_idx"].to_numpy()]).astype(np.int64)
        ).reshape(2, -1)

    @cached_property
    def positive_pairs(self) -> torch.Tensor:
        """`[2, E]` (user, item) training pairs rated at or above the positive threshold."""
        return self._pairs(self.train.filter(pl.col("rating") >= self.positive_threshold))

    @cached_property
    def negative_pairs(self) -> torch.Tensor:
        """`[2, E]` (user, item) training pairs rated at or below the negative threshold (explicit dislikes)."""
        return self._pairs(self.train.filter(pl.col("rating") <= self.negative_threshold))

    @cached_property
    def validation_positive_pairs(self) -> torch.Tensor:
        """`[2, E]` validation pairs that count as relevant when early stopping."""
        return self._pairs(self.validation.filter(pl.col("rating") >= self.positive_threshold))

    @cached_property
    def seen_pairs(self) -> torch.Tensor:
        """`[2, E]` every (user, item) the fold's training side contains: excluded from recommendations."""
        return self._pairs(
            pl.concat([self.train.select("user_idx", "item_idx"), self.validation.select("user_idx", "item_idx")])
        )

    @cached_property
    def train_pairs(self) -> torch.Tensor:
        """`[2, E]` (user, item) pairs of `train` with any rating: excluded when ranking validation items."""
        return self._pairs(self.train)


@dataclass
class TrainingLog:
    """What one fit did: reported by the pipeline next to each model's metrics."""

    epochs_run: int = 0
    best_epoch: int = 0
    best_validation_ndcg10: float = float("nan")
    seconds: float = 0.0
    final_training_loss: float = float("nan")
    """Mean loss per positive pair in the last epoch run (before the best state was restored)."""
    hyperparameters: dict[str, Any] = field(default_factory=dict[str, Any])
    trials: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    """Hyperparameter search only: one entry (hyperparameters + the fields above) per configuration tried."""
    search: dict[str, Any] = field(default_factory=dict[str, Any])
    """Hyperparameter search only: sampler, budget, trials run and pruned, seconds (see models/tuning.py)."""
    selected: dict[str, Any] = field(default_factory=dict[str, Any])
    """Hyperparameter search only: the value chosen on validation for every searched axis (what a later fit on a
    variant of the fold pins instead of searching again)."""
    curve: list[float] = field(default_factory=list[float])
    """Iterative fits: the validation NDCG@10 of every evaluation, in order (every `training.eval_every` epochs),
    so early-stopping and pruning rules can be judged from a run's `training.json`."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recommender(ABC):
    """Fit on a fold's training data; recommend top-k unseen items per user.

    Subclasses implement :meth:`fit` and :meth:`score`; :meth:`recommend` masks excluded items and takes the top k.
    """

    name: ClassVar[str]
    """What runs, tables and the command line call it (`models.names`)."""
    config_field: ClassVar[str | None] = None
    """The `models.<config_field>` section holding its settings (None: it has none)."""
    config_class: ClassVar[type[Strict] | None] = None
    """The class of that section."""
    uses_features: ClassVar[bool] = False
    """Whether `fit` reads `FoldData.item_features` / `user_features` (profile embeddings)."""
    training_log: TrainingLog
    """What the last :meth:`fit` did (an empty log before it)."""

    def __init__(self) -> None:
        self.training_log = TrainingLog()

    @classmethod
    def from_config(cls, models: ModelsConfig) -> Recommender:
        """A fresh, unfitted instance with its own section of `models` and the shared `models.training`."""
        if cls.config_field is None:
            return cls()
        return cls(getattr(models, cls.config_field), models.training)  # type: ignore[call-arg]

    @classmethod
    def pin(cls, section: Strict, selected: dict[str, Any]) -> Strict:
        """`section` with its search replaced by the values a fit chose on validation (`TrainingLog.selected`):
        every searched axis becomes a one-value list, with a budget of one trial. Models searching otherwise
        override it."""
        update = {**{k: [v] for k, v in selected.items()}, "n_trials": 1}
        return type(section).model_validate({**section.model_dump(), **update})  # validation restores field types

    def space(self) -> dict[str, Any]:
        """The hyperparameter axes searched per fold on validation (models/tuning.py); none by default."""
        return {}

    @abstractmethod
    def fit(self, data: FoldData) -> Recommender:
        """Learn from `data.train` (and select/stop on `data.validation`); returns self."""

    @abstractmethod
    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores `[len(users), n_items]` (higher is better) for the given `user_idx` values."""

    def recommend(
        self, users: torch.Tensor, k: int, exclude: torch.Tensor | None = None, batch_size: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-`k` `(item_idx, score)` per user, each `[len(users), k]`, best first.

        `exclude` is a `[2, E]` (user_idx, item_idx) tensor of pairs never to recommend (the user's training items).
        """
        return top_k(self.score, users, k, exclude, batch_size)


def top_k(
    score: Scores, users: torch.Tensor, k: int, exclude: torch.Tensor | None = None, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`Recommender.recommend` for any `score` function: top-`k` `(item_idx, score)` per user, best first,
    never an `exclude` pair, scoring `batch_size` users at a time."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    users = users.to(torch.long).cpu()
    items_out: list[torch.Tensor] = []
    scores_out: list[torch.Tensor] = []
    for start in range(0, len(users), batch_size):
        chunk = users[start : start + batch_size]
        scores = score(chunk).detach().float().cpu().clone()
        if exclude is not None and exclude.numel():
            mask_scores(scores, chunk, exclude)
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        items_out.append(top.indices)
        scores_out.append(top.values)
    return torch.cat(items_out), torch.cat(scores_out)


def dot_product_scores(embedding: torch.Tensor | None, users: torch.Tensor, n_users: int, name: str) -> torch.Tensor:
    """`[len(users), n_items]` dot products of user rows with item rows of a `[n_users + n_items, d]` embedding."""
    if embedding is None:
        raise RuntimeError(f"{name}.score called before fit")
    return embedding[users.long().to(embedding.device)] @ embedding[n_users:].T


def mask_scores(scores: torch.Tensor, users: torch.Tensor, exclude: torch.Tensor) -> None:
    """Set `scores[row, item] = -inf` in place for every excluded `(user, item)` pair of the rows' users."""
    row_of_user = torch.full((int(max(users.max().item(), exclude[0].max().item())) + 1,), -1, dtype=torch.long)
    row_of_user[users] = torch.arange(len(users))
    rows = row_of_user[exclude[0]]
    keep = rows >= 0
    scores[rows[keep], exclude[1][keep]] = float("-inf")


def fold_data(
    train: pl.DataFrame, n_users: int, n_items: int, positive_threshold: float = 4.0, negative_threshold: float = 2.0
) -> FoldData:
    """Split a fold's training frame (with its `is_validation` flag) into the fit and validation parts."""
    columns = ["user_idx", "item_idx", "rating"]
    return FoldData(
        n_users=n_users,
        n_items=n_items,
        train=train.filter(~pl.col("is_validation")).select(columns),
        validation=train.filter(pl.col("is_validation")).select(columns),
        positive_threshold=positive_threshold,
        negative_threshold=negative_threshold,
    )


def recommendations_frame(model: Recommender, data: FoldData, n: int) -> pl.DataFrame:
    """Every user's top-`n` unseen items as `user_idx, item_idx, rank (1 = best), score`."""
    users = torch.arange(data.n_users)
    items, scores = model.recommend(users, n, exclude=data.seen_pairs)
    width = items.shape[1]
    return pl.DataFrame(
        {
            "user_idx": users.repeat_interleave(width).numpy().astype(np.int32),
            "item_idx": items.reshape(-1).numpy().astype(np.int32),
            "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), data.n_users),
            "score": scores.reshape(-1).numpy().astype(np.float32),
        }
    )
