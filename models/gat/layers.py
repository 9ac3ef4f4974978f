r"""Library attention convolutions behind one signature (the `conv` layer: the paper's form), and the layer the
`conv` network stacks.

Both backends compute the same operator; for GATv2 (`attention="gatv2"`), per head :math:`k`:

.. math::
    e_{ij}^{k} = \mathbf{a}_k^\top \mathrm{LeakyReLU}\big(W_k^{s} h_j + W_k^{d} h_i\big), \qquad
    \alpha_{ij}^{k} = \operatorname{softmax}_{j \in \mathcal{N}(i)} e_{ij}^{k}, \qquad
    m_i = \big\Vert_{k=1}^{K} \textstyle\sum_{j \in \mathcal{N}(i)} \alpha_{ij}^{k} W_k^{s} h_j

(GAT: :math:`e_{ij}^k = \mathrm{LeakyReLU}(\mathbf{a}_k^\top [W_k h_i \Vert W_k h_j])`). Nodes without neighbours
in a relation receive 0 from it in both backends: PyG adds an output bias after aggregation that DGL's layer does
not have, so it is removed (`tests/test_models_gat_backends.py` checks both give the same outputs on the same
weights). With an edge feature (the rating, `edge_dim=1`) only PyG's `GATv2Conv` takes it; DGL's does not.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.config import Attention


class DGLAttention(nn.Module):
    """`dgl.nn.pytorch.GATv2Conv` / `GATConv` with heads concatenated; takes a `DGLGraph`."""

    def __init__(
        self,
        in_width: int,
        head_width: int,
        heads: int,
        attention: Attention,
        attention_dropout: float,
        edge_dim: int | None = None,
    ) -> None:
        super().__init__()
        if edge_dim is not None:
            raise ValueError("DGL's GATv2Conv takes no edge features: use backend 'pyg' for rating edge features")
        from e2ep.dgl_compat import import_dgl

        dglnn = import_dgl().nn.pytorch
        if attention == "gatv2":
            self.conv = dglnn.GATv2Conv(
                in_width, head_width, heads, attn_drop=attention_dropout, allow_zero_in_degree=True
            )
        else:
            self.conv = dglnn.GATConv(
                in_width, head_width, heads, attn_drop=attention_dropout, allow_zero_in_degree=True, bias=False
            )

    def forward(self, x: Tensor, graph: Any) -> Tensor:
        return self.conv(graph, x).flatten(1)


class PyGAttention(nn.Module):
    """`torch_geometric.nn.GATv2Conv` / `GATConv` with heads concatenated; takes an `edge_index`, or an
    `(edge_index, edge_attr)` pair when built with `edge_dim`."""

    def __init__(
        self,
        in_width: int,
        head_width: int,
        heads: int,
        attention: Attention,
        attention_dropout: float,
        edge_dim: int | None = None,
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv, GATv2Conv

        # Self-loops are left out as in the DGL form: the residual already carries the node's own state.
        if attention == "gatv2":
            self.conv = GATv2Conv(
                in_width,
                head_width,
                heads,
                concat=True,
                dropout=attention_dropout,
                add_self_loops=False,
                edge_dim=edge_dim,
            )
            self.conv.register_parameter("bias", None)  # DGL's GATv2Conv has no output bias (see module doc)
        else:
            self.conv = GATConv(
                in_width,
                head_width,
                heads,
                concat=True,
                dropout=attention_dropout,
                add_self_loops=False,
                edge_dim=edge_dim,
                bias=False,
            )

    def forward(self, x: Tensor, graph: Any) -> Tensor:
        if isinstance(graph, tuple):
            edge_index, edge_attr = graph
            return self.conv(x, edge_index, edge_attr=edge_attr)
        return self.conv(x, graph)


def attention_conv(
    backend: str,
    in_width: int,
    head_width: int,
    heads: int,
    attention: Attention,
    attention_dropout: float = 0.0,
    edge_dim: int | None = None,
) -> nn.Module:
    """An `in_width → heads * head_width` attention convolution of the given backend (`dgl` or `pyg`)."""
    cls = {"dgl": DGLAttention, "pyg": PyGAttention}[backend]
    return cls(in_width, head_width, heads, attention, attention_dropout, edge_dim)


class SignedGATLayer(nn.Module):
    r"""One layer over the signed graph: a convolution per relation, summed, then residual and LayerNorm:

    .. math::
        h_i' = \mathrm{LayerNorm}\Big(R h_i + \mathrm{Dropout}\big(\mathrm{LeakyReLU}\big(
               m_i^{+} + m_i^{-}\big)\big)\Big)

    where :math:`m^{+}` attends over liked neighbours and :math:`m^{-}` (its own weights) over disliked ones, and
    :math:`R` is the identity when the width is unchanged, else a linear map. `width` is the input width; the
    output has `heads * head_width` units (`head_width` defaults to `width / heads`).
    """

    def __init__(
        self,
        backend: str,
        width: int,
        heads: int,
        relations: list[str],
        attention: Attention = "gatv2",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        head_width: int | None = None,
        edge_dim: int | None = None,
    ) -> None:
        super().__init__()
        head_width = head_width or width // heads
        out = heads * head_width
        self.convs = nn.ModuleDict(
            {
                r: attention_conv(backend, width, head_width, heads, attention, attention_dropout, edge_dim)
                for r in relations
            }
        )
        self.residual = nn.Identity() if out == width else nn.Linear(width, out, bias=False)
        self.act = nn.LeakyReLU(0.2)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(out)

    def forward(self, h: Tensor, graphs: dict[str, Any]) -> Tensor:
        message = torch.stack([conv(h, graphs[r]) for r, conv in self.convs.items()]).sum(0)
        return self.norm(self.residual(h) + self.dropout(self.act(message)))
