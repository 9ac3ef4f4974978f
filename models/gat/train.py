"""The GAT's training loop: full-graph propagation per step, mini-batched BPR triples for the loss."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from e2ep.config import GATConfig, TrainingConfig
from models.base import FoldData
from models.gat.loss import HardNegatives, bpr_cosine_loss
from models.training import EarlyStopping, NegativeSampler, TrainingLog, bpr_epoch


def train_gat(
    network: torch.nn.Module,
    propagate: Callable[[], Tensor],
    evaluate: Callable[[], float],
    data: FoldData,
    cfg: GATConfig,
    training: TrainingConfig,
    device: torch.device,
    generator: torch.Generator,
) -> TrainingLog:
    """AdamW on BPR + cosine alignment, ReduceLROnPlateau and early stopping on `evaluate()` (validation NDCG@10).

    Every step propagates the whole graph (`propagate()` → `[n_users + n_items, hidden]`) and takes the loss on
    one batch of `cfg.batch_size` triples `(user, positive, negative)`; each positive pair appears once per epoch
    with a fresh negative (uniform among the user's non-positive items, or with probability
    `cfg.hard_negative_share` one of the user's explicit dislikes). `evaluate` runs every `training.eval_every`
    epochs (and after the last) in eval mode under `no_grad`; the best state is restored at the end.
    """
    start = time.perf_counter()
    pairs, n_users = data.positive_pairs, data.n_users
    sampler = NegativeSampler(pairs, data.n_items)
    hard = HardNegatives(data.negative_pairs, n_users)
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=cfg.lr_factor,
                                                          patience=cfg.lr_patience)
    stopper = EarlyStopping(training.patience)
    epoch, losses = 0, []
    for epoch in range(1, training.max_epochs + 1):
        network.train()
        epoch_loss = 0.0
        for users, pos, neg in bpr_epoch(pairs, sampler, cfg.batch_size, generator):
            neg = hard.mix(users, neg, cfg.hard_negative_share, generator)
            optimizer.zero_grad()
            h = propagate()
            users, pos, neg = users.to(device), pos.to(device) + n_users, neg.to(device) + n_users
            loss = bpr_cosine_loss(h[users], h[pos], h[neg], cfg.bpr_weight, cfg.cosine_weight).total
            loss.backward()
            optimizer.step()
            epoch_loss += float(loss.detach()) * len(users)
        losses.append(epoch_loss / pairs.shape[1])
        if epoch % training.eval_every == 0 or epoch == training.max_epochs:
            network.eval()
            with torch.no_grad():
                score = evaluate()
            schedule.step(score if score == score else 0.0)
            if stopper.step(score, epoch, network):
                break
    stopper.restore(network)
    network.eval()
    return TrainingLog(
        epochs_run=epoch,
        best_epoch=stopper.best_epoch,
        best_validation_ndcg10=stopper.best_score if stopper.best_state is not None else float("nan"),
        seconds=time.perf_counter() - start,
        hyperparameters={"final_learning_rate": optimizer.param_groups[0]["lr"],
                         "final_training_loss": losses[-1] if losses else float("nan")},
    )
