"""The GAT's training: full-graph propagation per step, mini-batched positives for the loss."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from models.base import FoldData, Scores, TrainingLog, dot_product_scores
from models.config import GATConfig
from models.gat.graph import build_rating_graph, build_signed_graph
from models.gat.loss import HardNegatives, bpr_cosine_loss, full_softmax_loss, sampled_softmax_loss
from models.gat.network import GATNetwork, build_network
from models.training import BPRTraining


class GATTraining(BPRTraining[torch.nn.Module]):
    """One GAT fit: AdamW on the configured loss, ReduceLROnPlateau on validation NDCG@10.

    Every step propagates the whole graph once (`[n_users + n_items, hidden]`) and takes the loss on one batch of
    `cfg.batch_size` positive pairs, each positive appearing once per epoch. `softmax`: against `cfg.negatives`
    items drawn uniformly for the batch; `bpr`: against one fresh negative per positive (uniform among the user's
    non-positive items, or with probability `cfg.hard_negative_share` one of the user's explicit dislikes).
    Validation scores are dot products of the network's final vectors (unit-normalised when `cfg.cosine_scores`).
    """

    graphs: dict[str, Any]
    hard: HardNegatives
    schedule: torch.optim.lr_scheduler.ReduceLROnPlateau

    def __init__(self, cfg: GATConfig, features: Tensor | None, device: torch.device) -> None:
        super().__init__(cfg.learning_rate, cfg.batch_size, device)
        self.cfg, self.features = cfg, features

    def build_module(self, data: FoldData) -> torch.nn.Module:
        cfg = self.cfg
        graph = build_rating_graph(data) if cfg.edge_ratings else build_signed_graph(data, cfg.negative_edges)
        self.graphs = graph.to_backend("torch" if cfg.layer == "normalised" else cfg.backend, self.device)
        features = self.features.to(self.device) if self.features is not None else None
        self.hard = HardNegatives(data.negative_pairs, data.n_users)
        return build_network(graph.n_nodes, cfg, list(self.graphs), features, ids=cfg.id_embeddings).to(self.device)

    def make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        optimizer = torch.optim.AdamW(self.module.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.lr_factor, patience=cfg.lr_patience
        )
        return optimizer

    def negatives(self, users: Tensor, neg: Tensor) -> Tensor:
        return self.hard.mix(users, neg, self.cfg.hard_negative_share, self.generator)

    def batch_loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        cfg, network = self.cfg, self.module
        n_users, n_items = self.data.n_users, self.data.n_items
        h = network(self.graphs)
        u, i = h[users], h[pos + n_users]
        alignment: Tensor | float = 0.0
        if cfg.cosine_weight:
            alignment = cfg.cosine_weight * (1.0 - torch.nn.functional.cosine_similarity(u, i, dim=-1).mean())
        penalty: Tensor | float = 0.0
        ids = network.ids if isinstance(network, GATNetwork) else None
        if cfg.embedding_reg and ids is not None:  # LightGCN's L2 on the batch's layer-0 vectors
            penalty = cfg.embedding_reg * (ids[users].square().sum() + ids[pos + n_users].square().sum()) / len(users)
        if cfg.loss == "softmax" and cfg.negatives >= n_items:  # the exact softmax over the whole catalogue
            ranking = full_softmax_loss(u, h[n_users:], pos, cfg.temperature, cfg.cosine_scores, users)
            return cfg.bpr_weight * ranking + alignment + penalty
        if cfg.loss == "softmax":
            sampled = torch.randint(n_items, (cfg.negatives,), generator=self.generator).to(h.device)
            ranking = sampled_softmax_loss(u, i, h[sampled + n_users], cfg.temperature, cfg.cosine_scores)
            return cfg.bpr_weight * ranking + alignment + penalty
        return bpr_cosine_loss(u, i, h[neg + n_users], cfg.bpr_weight, cfg.cosine_weight).total + penalty

    def after_evaluation(self, score: float) -> None:
        self.schedule.step(score if score == score else 0.0)  # NaN (no validation positives) counts as 0

    def vectors(self) -> Tensor:
        """The final user and item vectors `[n_users + n_items, hidden]` of the network as it is now (eval mode,
        no grad)."""
        h = self.module(self.graphs).detach()
        return torch.nn.functional.normalize(h, dim=1) if self.cfg.cosine_scores else h

    def scorer(self) -> Scores:
        vectors, n_users = self.vectors(), self.data.n_users
        return lambda users: dot_product_scores(vectors, users, n_users, "gat")

    def finalize(self, log: TrainingLog) -> None:
        log.hyperparameters = {"final_learning_rate": self.optimizer.param_groups[0]["lr"]}
