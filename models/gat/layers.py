r"""Attention convolutions behind one signature, and the layer the GAT stacks.

Both backends compute the same operator; for GATv2 (`attention="gatv2"`), per head :math:`k`:

.. math::
    e_{ij}^{k} = \mathbf{a}_k^\top \mathrm{LeakyReLU}\big(W_k^{s} h_j + W_k^{d} h_i\big), \qquad
    \alpha_{ij}^{k} = \operatorname{softmax}_{j \in \mathcal{N}(i)} e_{ij}^{k}, \qquad
    m_i = \big\Vert_{k=1}^{K} \textstyle\sum_{j \in \mathcal{N}(i)} \alpha_{ij}^{k} W_k^{s} h_j

(GAT: :math:`e_{ij}^k = \mathrm{LeakyReLU}(\mathbf{a}_k^\top [W_k h_i \Vert W_k h_j])`). Each of the :math:`K`
heads has `hidden / K` units, so the concatenation has the layer's width and residuals need no projection. Nodes
without neighbours in a relation receive only the bias.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

Attention = Literal["gatv2", "gat"]


class DGLAttention(nn.Module):
    """`dgl.nn.pytorch.GATv2Conv` / `GATConv` with heads concatenated; takes a `DGLGraph`."""

    def __init__(self, width: int, heads: int, attention: Attention, attention_dropout: float) -> None:
        super().__init__()
        from e2ep.dgl_compat import import_dgl

        dglnn = import_dgl().nn.pytorch
        conv = dglnn.GATv2Conv if attention == "gatv2" else dglnn.GATConv
        self.conv = conv(width, width // heads, heads, attn_drop=attention_dropout, allow_zero_in_degree=True)

    def forward(self, x: Tensor, graph: Any) -> Tensor:
        return self.conv(graph, x).flatten(1)


class PyGAttention(nn.Module):
    """`torch_geometric.nn.GATv2Conv` / `GATConv` with heads concatenated; takes an `edge_index`."""

    def __init__(self, width: int, heads: int, attention: Attention, attention_dropout: float) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv, GATv2Conv

        conv = GATv2Conv if attention == "gatv2" else GATConv
        # Self-loops are left out as in the DGL form: the residual already carries the node's own state.
        self.conv = conv(width, width // heads, heads, concat=True, dropout=attention_dropout, add_self_loops=False)

    def forward(self, x: Tensor, graph: Tensor) -> Tensor:
        return self.conv(x, graph)


def attention_conv(backend: str, width: int, heads: int, attention: Attention,
                   attention_dropout: float = 0.0) -> nn.Module:
    """A `width → width` attention convolution of the given backend (`dgl` or `pyg`)."""
    cls = {"dgl": DGLAttention, "pyg": PyGAttention}[backend]
    return cls(width, heads, attention, attention_dropout)


class SignedGATLayer(nn.Module):
    r"""One layer over the signed graph: a convolution per relation, summed, then residual and LayerNorm:

    .. math::
        h_i' = \mathrm{LayerNorm}\Big(h_i + \mathrm{Dropout}\big(\mathrm{LeakyReLU}\big(
               m_i^{+} + m_i^{-}\big)\big)\Big)

    where :math:`m^{+}` attends over liked neighbours and :math:`m^{-}` (its own weights) over disliked ones.
    """

    def __init__(self, backend: str, width: int, heads: int, relations: list[str], attention: Attention = "gatv2",
                 dropout: float = 0.0, attention_dropout: float = 0.0) -> None:
        super().__init__()
        self.convs = nn.ModuleDict({r: attention_conv(backend, width, heads, attention, attention_dropout)
                                    for r in relations})
        self.act = nn.LeakyReLU(0.2)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(width)

    def forward(self, h: Tensor, graphs: dict[str, Any]) -> Tensor:
        message = torch.stack([conv(h, graphs[r]) for r, conv in self.convs.items()]).sum(0)
        return self.norm(h + self.dropout(self.act(message)))
