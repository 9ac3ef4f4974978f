"""`gat` and `gat-id`: the paper's graph attention recommender behind `models.base.Recommender`."""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import torch
from torch import Tensor

from e2ep.configbase import Strict
from e2ep.errors import ConfigError, DataError
from models.base import FoldData, Recommender, TrainingLog, dot_product_scores
from models.config import PAPER_GAT, GATConfig, TrainingConfig
from models.gat.train import GATTraining
from models.training import Report, Trainer, resolve_device
from models.tuning import grid_search, parameter_grid

log = logging.getLogger(__name__)


class GATRecommender(Recommender):
    r"""Graph attention over the signed user–item graph with profile embeddings as node features.

    Users and items are nodes; liked (:math:`r \ge \tau_+`) and disliked (:math:`r \le \tau_-`) training ratings
    are two edge relations, both bidirectional, each with its own attention convolution per layer (see
    `models.gat.graph` and `models.gat.layers`). Node inputs are the MiniLM embeddings of the user and item
    profiles (`FoldData.user_features` / `item_features`), projected to `cfg.hidden`; a user's score for an item is
    the dot product of their final vectors. Trained with BPR + cosine alignment (`models.gat.loss`), AdamW and
    early stopping on validation NDCG@10 (`models.gat.train.GATTraining`); the backend (DGL or PyG) is
    `cfg.backend`.
    """

    name: ClassVar[str] = "gat"
    config_field: ClassVar[str | None] = "gat"
    config_class: ClassVar[type[Strict] | None] = GATConfig
    uses_features: ClassVar[bool] = True

    def __init__(self, cfg: GATConfig | None = None, training: TrainingConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or GATConfig()
        self.training = training or TrainingConfig()
        self.device = self._device()
        self.network: torch.nn.Module | None = None
        self.n_users = 0
        self._embedding: Tensor | None = None

    def _device(self) -> torch.device:
        device = resolve_device(self.training.device)
        if device.type == "cuda" and self.cfg.backend == "dgl":
            from e2ep.dgl_compat import dgl_has_cuda

            if not dgl_has_cuda():
                if self.training.device == "cuda":
                    raise ConfigError(
                        "the installed DGL has no CUDA support: use models.gat.backend=pyg or training.device=cpu"
                    )
                log.warning("the installed DGL has no CUDA support: the GAT runs on the CPU (backend=pyg uses the GPU)")
                device = torch.device("cpu")
        return device

    def node_features(self, data: FoldData) -> Tensor | None:
        """`[n_users + n_items, d]` text embeddings, users first; ConfigError/DataError when unusable.

        Users: their profile embeddings, or with `user_text = "liked_items"` the mean embedding of the items they
        liked in the fold's training ratings (`FoldData.positive_pairs`; users with no like get zeros)."""
        liked = self.cfg.user_text == "liked_items"
        if data.item_features is None or (data.user_features is None and not liked):
            raise ConfigError(
                "the GAT needs user and item profile embeddings (the experiment's semantic stage); "
                "enable it or use gat-id"
            )
        items = data.item_features
        users = liked_item_mean(data.positive_pairs, items.float(), data.n_users) if liked else data.user_features
        assert users is not None  # checked above: profiles are only optional with `liked_items`
        if (
            users.shape[0] != data.n_users
            or items.shape[0] != data.n_items
            or users.ndim != 2
            or items.ndim != 2
            or users.shape[1] != items.shape[1]
        ):
            raise DataError(
                f"profile embeddings do not fit the fold: users {tuple(users.shape)} for {data.n_users} "
                f"users, items {tuple(items.shape)} for {data.n_items} items"
            )
        return torch.cat([users.float(), items.float()])

    @classmethod
    def pin(cls, section: Strict, selected: dict[str, Any]) -> Strict:
        """The GAT searches a grid (`selection_grid`): pinning empties it and sets the chosen fields."""
        return type(section).model_validate({**section.model_dump(), **selected, "selection_grid": {}})

    def space(self) -> dict[str, Any]:
        return dict(self.cfg.selection_grid)

    def fit(self, data: FoldData) -> GATRecommender:
        """Fit one network per point of `cfg.selection_grid` (one fit when empty) and keep the best on the fold's
        validation NDCG@10 (`models.tuning.grid_search`)."""
        started = time.perf_counter()
        features = self.node_features(data)
        self.n_users = data.n_users
        base = self.cfg
        grid = parameter_grid(**base.selection_grid) if base.selection_grid else [{}]
        tuning = self.training.tuning
        pruning = tuning.pruning_warmup if tuning.pruning else None

        def fit_one(report: Report, **params: float) -> tuple[tuple[torch.nn.Module, Tensor, GATConfig], TrainingLog]:
            cfg = base.model_copy(update={k: type(getattr(base, k))(v) for k, v in params.items()})
            return self._fit_network(data, cfg, features, report)

        (self.network, self._embedding, self.cfg), log = grid_search(grid, fit_one, started, pruning)
        log.selected = {k: getattr(self.cfg, k) for k in base.selection_grid}
        self.training_log = log
        self.cfg = base
        return self

    def _fit_network(
        self,
        data: FoldData,
        cfg: GATConfig,
        features: Tensor | None,
        report: Report | None = None,
    ) -> tuple[tuple[torch.nn.Module, Tensor, GATConfig], TrainingLog]:
        """One network with the settings `cfg`: the trained network, its final vectors, `cfg`, and the log."""
        training = self.training
        if cfg.patience is not None:
            training = training.model_copy(update={"patience": cfg.patience})
        fit = GATTraining(cfg, features, self.device)
        log = Trainer(data, training, report).fit(fit)
        with torch.no_grad():
            embedding = fit.vectors()  # the restored best state's vectors
        log.hyperparameters = {**self.hyperparameters(cfg), **log.hyperparameters}
        return (fit.module, embedding, cfg), log

    def hyperparameters(self, cfg: GATConfig) -> dict[str, Any]:
        """What a fit with the settings `cfg` logs."""
        features = (
            ("profiles+ids" if cfg.id_embeddings and cfg.layer == "normalised" else "profiles")
            if self.uses_features
            else "ids"
        )
        return {**cfg.model_dump(), "features": features, "device": self.device.type}

    @torch.no_grad()
    def score(self, users: Tensor) -> Tensor:
        return dot_product_scores(self._embedding, users, self.n_users, self.name)


class GATIDRecommender(GATRecommender):
    """ "GAT without LLM": the same network and training with learned ID embeddings instead of profile features."""

    name: ClassVar[str] = "gat-id"
    config_field: ClassVar[str | None] = "gat"
    config_class: ClassVar[type[Strict] | None] = GATConfig
    uses_features: ClassVar[bool] = False

    def node_features(self, data: FoldData) -> Tensor | None:
        return None


class GATPaperRecommender(GATRecommender):
    """The authors' GAT as published (`models.config.PAPER_GAT`, the `models.gat_paper` section): library GATv2
    layers with heads [4, 4, 1] over every rating with the rating as edge feature, trainable text features, full
    batch, 5 · BPR + 2 · cosine."""

    name: ClassVar[str] = "gat-paper"
    config_field: ClassVar[str | None] = "gat_paper"
    config_class: ClassVar[type[Strict] | None] = GATConfig

    def __init__(self, cfg: GATConfig | None = None, training: TrainingConfig | None = None) -> None:
        super().__init__(cfg or PAPER_GAT, training)


def liked_item_mean(positive_pairs: Tensor, item_features: Tensor, n_users: int) -> Tensor:
    """`[n_users, d]`: each user's mean item feature over their liked training items (zeros for none)."""
    users, items = positive_pairs[0].long(), positive_pairs[1].long()
    total = torch.zeros(n_users, item_features.shape[1]).index_add_(0, users, item_features[items])
    count = torch.bincount(users, minlength=n_users).clamp_min(1).unsqueeze(1)
    return total / count
