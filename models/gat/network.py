r"""The GAT networks: node inputs → stacked attention layers → user and item vectors, scored by dot products.

Two layer families (`GATConfig.layer`):

* `normalised` (`gat`, `gat-id`): degree-normalised attention (`models.gat.attention`) without weight matrices,
  nonlinearity or LayerNorm, so vector norms and degrees survive to the score. Input:

  .. math::
      h^{(0)} = E_{\mathrm{id}} + P\,x_{\mathrm{text}}, \qquad
      h^{(l+1)} = m^{+}(h^{(l)}) + \gamma\, m^{-}(h^{(l)}), \qquad
      z = \tfrac{1}{L+1}\textstyle\sum_{l=0}^{L} h^{(l)}

  with learned ID embeddings :math:`E_{\mathrm{id}}` (`id_embeddings`; always for `gat-id`), a linear projection
  :math:`P` of the (frozen unless `trainable_features`) text embeddings, the dislike relation's messages
  :math:`m^{-}` weighted by a learned :math:`\gamma` that starts at 0, and `readout` `mean` (as above) or `last`.
* `conv` (`gat-paper`): the library `GATv2Conv` layers of `models.gat.layers` (DGL or PyG), with residuals,
  LeakyReLU and LayerNorm, on the text embeddings themselves (the authors' network); per-layer heads `layer_heads`
  of `hidden` units each, concatenated, or `heads` heads sharing `hidden`.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from models.config import GATConfig
from models.gat.attention import NormalisedAttention
from models.gat.layers import SignedGATLayer


class GATNetwork(nn.Module):
    """Node vectors `[n_users + n_items, hidden]` from the graph (`normalised` layers).

    `features`: `[n_nodes, d]` text embeddings or None; `ids`: add learned ID embeddings (forced when there are
    no features). `relations`: the graph's relation names (`positive`, and `negative` when dislikes are edges).
    """

    def __init__(
        self, n_nodes: int, cfg: GATConfig, relations: list[str], features: Tensor | None = None, ids: bool = True
    ) -> None:
        super().__init__()
        self.readout = cfg.readout
        self.ids: nn.Parameter | None = None
        if ids or features is None:
            self.ids = nn.Parameter(torch.randn(n_nodes, cfg.hidden) * cfg.init_scale)
        self.projection: nn.Linear | None = None
        if features is not None:
            features = features.float().clone()
            if cfg.trainable_features:
                self.features = nn.Parameter(features)
            else:
                self.register_buffer("features", features)
            self.projection = nn.Linear(features.shape[1], cfg.hidden, bias=False)
            # unit-norm text → projected coordinates of the ID embeddings' scale
            nn.init.normal_(self.projection.weight, std=cfg.init_scale)
        self.input_dropout = nn.Dropout(cfg.feature_dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        self.relations = relations
        self.layers = nn.ModuleList(
            [
                nn.ModuleDict(
                    {
                        r: NormalisedAttention(
                            cfg.hidden, cfg.heads, cfg.attention, cfg.attention_dropout, cfg.attention_bound
                        )
                        for r in relations
                    }
                )
                for _ in range(cfg.num_layers)
            ]
        )
        self.negative_gate = nn.Parameter(torch.zeros(cfg.num_layers)) if "negative" in relations else None

    def inputs(self) -> Tensor:
        h = self.ids if self.ids is not None else 0.0
        if self.projection is not None:
            h = h + self.projection(self.input_dropout(self.features))
        assert isinstance(h, Tensor)  # without features, `ids` is always set
        return h

    def forward(self, graphs: dict[str, Any]) -> Tensor:
        h = self.inputs()
        total = h
        for depth, layer in enumerate(self.layers):
            convs = cast(nn.ModuleDict, layer)
            message = convs["positive"](h, graphs["positive"])
            if self.negative_gate is not None:
                message = message + self.negative_gate[depth] * convs["negative"](h, graphs["negative"])
            h = self.dropout(message)
            total = total + h
        return total / (len(self.layers) + 1) if self.readout == "mean" else h


class ConvGATNetwork(nn.Module):
    """The `conv` network (the authors' form): text features (or learned IDs) → `GATv2Conv` layers with residual,
    LeakyReLU and LayerNorm; the input is projected to `hidden` first unless `layer_heads` is set (then the first
    convolution reads the features directly, as the authors' does)."""

    def __init__(
        self, n_nodes: int, cfg: GATConfig, relations: list[str], features: Tensor | None = None, ids: bool = False
    ) -> None:
        super().__init__()
        self.readout = cfg.readout
        if features is None:
            self.embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_nodes, cfg.hidden)))
        else:
            features = features.float().clone()
            if cfg.trainable_features:
                self.embedding = nn.Parameter(features)
            else:
                self.register_buffer("embedding", features)
        width = self.embedding.shape[1]
        self.input_dropout = nn.Dropout(cfg.feature_dropout)
        edge_dim = 1 if "rated" in relations else None
        layers: list[SignedGATLayer] = []
        if cfg.layer_heads:
            self.input: nn.Module = nn.Identity()
            for heads in cfg.layer_heads:
                layers.append(
                    SignedGATLayer(
                        cfg.backend,
                        width,
                        heads,
                        relations,
                        cfg.attention,
                        cfg.dropout,
                        cfg.attention_dropout,
                        head_width=cfg.hidden,
                        edge_dim=edge_dim,
                    )
                )
                width = heads * cfg.hidden
        else:
            self.input = nn.Sequential(nn.Linear(width, cfg.hidden), nn.LayerNorm(cfg.hidden))
            layers = [
                SignedGATLayer(
                    cfg.backend,
                    cfg.hidden,
                    cfg.heads,
                    relations,
                    cfg.attention,
                    cfg.dropout,
                    cfg.attention_dropout,
                    edge_dim=edge_dim,
                )
                for _ in range(cfg.num_layers)
            ]
        self.layers = nn.ModuleList(layers)

    def forward(self, graphs: dict[str, Any]) -> Tensor:
        h = self.input(self.input_dropout(self.embedding))
        outputs = [h]
        for layer in self.layers:
            h = layer(h, graphs)
            outputs.append(h)
        if self.readout == "mean" and all(o.shape == h.shape for o in outputs):
            return torch.stack(outputs).mean(0)
        return h


def build_network(n_nodes: int, cfg: GATConfig, relations: list[str], features: Tensor | None, ids: bool) -> nn.Module:
    cls = GATNetwork if cfg.layer == "normalised" else ConvGATNetwork
    return cls(n_nodes, cfg, relations, features, ids)
