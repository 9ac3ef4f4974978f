r"""The GAT network: node inputs → projection → `num_layers` signed attention layers → user and item vectors.

Inputs are either the profile embeddings (`[U + I, d]`, users then items; `gat`) projected to the hidden width by
one linear map shared by users and items, so users and items start in the same space, or learned ID embeddings of
the hidden width (`gat-id`). Either way

.. math::
    h^{(0)} = \mathrm{LayerNorm}\big(W\,\mathrm{Dropout}(x) + b\big), \qquad
    h^{(l+1)} = \mathrm{SignedGATLayer}_l\big(h^{(l)}\big), \qquad
    \hat{y}_{ui} = z_u^\top z_i,

with :math:`z = h^{(L)}` (`readout="last"`, the paper's) or :math:`z = \frac{1}{L+1}\sum_{l=0}^{L} h^{(l)}`
(`readout="mean"`, LightGCN's layer combination).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from e2ep.config import GATConfig
from models.gat.layers import SignedGATLayer


class GATNetwork(nn.Module):
    """Node vectors `[n_users + n_items, hidden]` from the signed graph.

    `features`: `[n_nodes, d]` text embeddings (trainable when `cfg.trainable_features`), or None for learned ID
    embeddings. `relations`: the graph's relation names (`positive`, and `negative` when dislikes are edges).
    """

    def __init__(self, n_nodes: int, cfg: GATConfig, relations: list[str], features: Tensor | None = None) -> None:
        super().__init__()
        self.n_nodes = n_nodes
        self.readout = cfg.readout
        if features is None:
            self.embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_nodes, cfg.hidden)))
            self.projection: nn.Module = nn.Identity()
        else:
            features = features.float().clone()
            if cfg.trainable_features:
                self.embedding = nn.Parameter(features)
            else:
                self.register_buffer("embedding", features)
            self.projection = nn.Linear(features.shape[1], cfg.hidden)
        self.input_dropout = nn.Dropout(cfg.feature_dropout)
        self.input_norm = nn.LayerNorm(cfg.hidden)
        self.layers = nn.ModuleList([
            SignedGATLayer(cfg.backend, cfg.hidden, cfg.heads, relations, cfg.attention, cfg.dropout,
                           cfg.attention_dropout)
            for _ in range(cfg.num_layers)
        ])

    def forward(self, graphs: dict[str, Any]) -> Tensor:
        h = self.input_norm(self.projection(self.input_dropout(self.embedding)))
        total = h
        for layer in self.layers:
            h = layer(h, graphs)
            total = total + h
        return total / (len(self.layers) + 1) if self.readout == "mean" else h

