"""`gat` and `gat-id`: the paper's graph attention recommender behind `models.base.Recommender`."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
from torch import Tensor

from e2ep.config import GATConfig, TrainingConfig
from e2ep.errors import ConfigError, DataError
from models.base import FoldData, Recommender, dot_product_scores
from models.gat.graph import build_signed_graph
from models.gat.network import GATNetwork
from models.gat.train import train_gat
from models.training import TrainingLog, resolve_device, seed_everything, validation_ndcg

log = logging.getLogger(__name__)


class GATRecommender(Recommender):
    r"""Graph attention over the signed user–item graph with profile embeddings as node features.

    Users and items are nodes; liked (:math:`r \ge \tau_+`) and disliked (:math:`r \le \tau_-`) training ratings
    are two edge relations, both bidirectional, each with its own attention convolution per layer (see
    `models.gat.graph` and `models.gat.layers`). Node inputs are the MiniLM embeddings of the user and item
    profiles (`FoldData.user_features` / `item_features`), projected to `cfg.hidden`; a user's score for an item is
    the dot product of their final vectors. Trained with BPR + cosine alignment (`models.gat.loss`), AdamW and
    early stopping on validation NDCG@10 (`models.gat.train`); the backend (DGL or PyG) is `cfg.backend`.
    """

    name: ClassVar[str] = "gat"
    uses_features: ClassVar[bool] = True

    def __init__(self, cfg: GATConfig | None = None, training: TrainingConfig | None = None) -> None:
        self.cfg = cfg or GATConfig()
        self.training = training or TrainingConfig()
        self.device = self._device()
        self.network: GATNetwork | None = None
        self.n_users = 0
        self._embedding: Tensor | None = None
        self.training_log = TrainingLog()

    def _device(self) -> torch.device:
        device = resolve_device(self.training.device)
        if device.type == "cuda" and self.cfg.backend == "dgl":
            from e2ep.dgl_compat import dgl_has_cuda

            if not dgl_has_cuda():
                if self.training.device == "cuda":
                    raise ConfigError("the installed DGL has no CUDA support: use models.gat.backend=pyg "
                                      "or training.device=cpu")
                log.warning("the installed DGL has no CUDA support: the GAT runs on the CPU (backend=pyg uses the GPU)")
                device = torch.device("cpu")
        return device

    def node_features(self, data: FoldData) -> Tensor | None:
        """`[n_users + n_items, d]` profile embeddings, users first; ConfigError/DataError when unusable."""
        if data.user_features is None or data.item_features is None:
            raise ConfigError("the GAT needs user and item profile embeddings (the experiment's semantic stage); "
                              "enable it or use gat-id")
        users, items = data.user_features, data.item_features
        if users.shape[0] != data.n_users or items.shape[0] != data.n_items or users.ndim != 2 \
                or items.ndim != 2 or users.shape[1] != items.shape[1]:
            raise DataError(f"profile embeddings do not fit the fold: users {tuple(users.shape)} for {data.n_users} "
                            f"users, items {tuple(items.shape)} for {data.n_items} items")
        return torch.cat([users.float(), items.float()])

    def fit(self, data: FoldData) -> GATRecommender:
        features = self.node_features(data)
        generator = seed_everything(self.training.seed)
        self.n_users = data.n_users
        graph = build_signed_graph(data, self.cfg.negative_edges)
        graphs = graph.to_backend(self.cfg.backend, self.device)
        features = features.to(self.device) if features is not None else None
        self.network = network = GATNetwork(graph.n_nodes, self.cfg, list(graphs), features).to(self.device)

        def evaluate() -> float:
            self._embedding = network(graphs).detach()
            return validation_ndcg(self, data)

        self.training_log = train_gat(network, lambda: network(graphs), evaluate, data, self.cfg, self.training,
                                      self.device, generator)
        with torch.no_grad():
            self._embedding = network(graphs).detach()  # the restored best state's vectors
        self.training_log.hyperparameters = {**self.hyperparameters(), **self.training_log.hyperparameters}
        return self

    def hyperparameters(self) -> dict[str, Any]:
        return {**self.cfg.model_dump(), "features": "profiles" if self.uses_features else "ids",
                "device": self.device.type}

    @torch.no_grad()
    def score(self, users: Tensor) -> Tensor:
        return dot_product_scores(self._embedding, users, self.n_users, self.name)


class GATIDRecommender(GATRecommender):
    """"GAT without LLM": the same network and training with learned ID embeddings instead of profile features."""

    name: ClassVar[str] = "gat-id"
    uses_features: ClassVar[bool] = False

    def node_features(self, data: FoldData) -> Tensor | None:
        return None
