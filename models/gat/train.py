"""The GAT's training loop: full-graph propagation per step, mini-batched positives for the loss."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from models.config import GATConfig, TrainingConfig
from models.base import FoldData
from models.gat.loss import HardNegatives, bpr_cosine_loss, full_softmax_loss, sampled_softmax_loss
from models.training import TrainingLog, train_bpr


def train_gat(
    network: torch.nn.Module,
    propagate: Callable[[], Tensor],
    evaluate: Callable[[], float],
    data: FoldData,
    cfg: GATConfig,
    training: TrainingConfig,
    device: torch.device,
    generator: torch.Generator,
    report: Callable[[float], None] | None = None,
) -> TrainingLog:
    """AdamW on the configured loss, ReduceLROnPlateau and early stopping on `evaluate()` (validation NDCG@10).

    Every step propagates the whole graph once (`propagate()` → `[n_users + n_items, hidden]`) and takes the loss on
    one batch of `cfg.batch_size` positive pairs, each positive appearing once per epoch. `softmax`: against
    `cfg.negatives` items drawn uniformly for the batch; `bpr`: against one fresh negative per positive (uniform
    among the user's non-positive items, or with probability `cfg.hard_negative_share` one of the user's explicit
    dislikes). `evaluate` runs every `training.eval_every` epochs (and after the last) in eval mode under
    `no_grad`, then `report(score)` (a search's pruning hook, which may raise); the best state is restored at the
    end.
    """
    n_users, n_items = data.n_users, data.n_items
    if cfg.patience is not None:
        training = training.model_copy(update={"patience": cfg.patience})
    hard = HardNegatives(data.negative_pairs, n_users)
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=cfg.lr_factor,
                                                          patience=cfg.lr_patience)

    def batch_loss(users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        h = propagate()
        u, i = h[users], h[pos + n_users]
        alignment = 0.0
        if cfg.cosine_weight:
            alignment = cfg.cosine_weight * (1.0 - torch.nn.functional.cosine_similarity(u, i, dim=-1).mean())
        penalty = 0.0
        ids = getattr(network, "ids", None)
        if cfg.embedding_reg and ids is not None:  # LightGCN's L2 on the batch's layer-0 vectors
            penalty = cfg.embedding_reg * (ids[users].square().sum() + ids[pos + n_users].square().sum()) / len(users)
        if cfg.loss == "softmax" and cfg.negatives >= n_items:  # the exact softmax over the whole catalogue
            ranking = full_softmax_loss(u, h[n_users:], pos, cfg.temperature, cfg.cosine_scores, users)
            return cfg.bpr_weight * ranking + alignment + penalty
        if cfg.loss == "softmax":
            sampled = torch.randint(n_items, (cfg.negatives,), generator=generator).to(h.device)
            ranking = sampled_softmax_loss(u, i, h[sampled + n_users], cfg.temperature, cfg.cosine_scores)
            return cfg.bpr_weight * ranking + alignment + penalty
        return bpr_cosine_loss(u, i, h[neg + n_users], cfg.bpr_weight, cfg.cosine_weight).total + penalty

    log = train_bpr(network, batch_loss, evaluate, data, training, cfg.learning_rate, device, generator,
                    optimizer=optimizer, batch_size=cfg.batch_size,
                    after_evaluation=lambda score: schedule.step(score if score == score else 0.0),
                    negatives=lambda users, neg: hard.mix(users, neg, cfg.hard_negative_share, generator),
                    report=report)
    log.hyperparameters = {"final_learning_rate": optimizer.param_groups[0]["lr"]}
    return log
