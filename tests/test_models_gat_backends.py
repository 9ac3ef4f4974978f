"""The DGL and PyG forms of the `conv` layer compute the same function: same weights, same graph (with nodes that
have no neighbour in a relation), same outputs."""

from __future__ import annotations

import pytest
import torch

from models.gat.graph import SignedGraph, bidirectional_edges
from models.gat.layers import SignedGATLayer

# 5 users, 4 items; user 4 and item 3 have no liked edge, users 0-2 and item 0 have no disliked edge
LIKED = torch.tensor([[0, 0, 1, 2, 3], [0, 1, 1, 2, 0]])
DISLIKED = torch.tensor([[3, 4], [1, 2]])


def _copy_weights(dgl_layer: SignedGATLayer, pyg_layer: SignedGATLayer, attention: str) -> None:
    """PyG's parameters set to DGL's: source/target transforms, attention vectors, residual and LayerNorm."""
    with torch.no_grad():
        for relation, dgl_conv in dgl_layer.convs.items():
            d, p = dgl_conv.conv, pyg_layer.convs[relation].conv
            if attention == "gatv2":
                p.lin_l.weight.copy_(d.fc_src.weight), p.lin_l.bias.copy_(d.fc_src.bias)
                p.lin_r.weight.copy_(d.fc_dst.weight), p.lin_r.bias.copy_(d.fc_dst.bias)
                p.att.copy_(d.attn)
            else:
                p.lin.weight.copy_(d.fc.weight)
                p.att_src.copy_(d.attn_l), p.att_dst.copy_(d.attn_r)
        pyg_layer.norm.load_state_dict(dgl_layer.norm.state_dict())


@pytest.mark.parametrize("attention", ["gatv2", "gat"])
def test_dgl_and_pyg_layers_agree_on_the_same_weights(attention: str) -> None:
    graph = SignedGraph(5, 4, bidirectional_edges(LIKED, 5), bidirectional_edges(DISLIKED, 5))
    torch.manual_seed(0)
    dgl_layer = SignedGATLayer("dgl", 8, 2, ["positive", "negative"], attention).eval()
    pyg_layer = SignedGATLayer("pyg", 8, 2, ["positive", "negative"], attention).eval()
    # every PyG parameter has a DGL counterpart (an extra output bias would reach nodes without neighbours)
    count = lambda layer: sum(p.numel() for p in layer.parameters())  # noqa: E731
    assert count(dgl_layer) == count(pyg_layer)
    for conv in dgl_layer.convs.values():  # non-zero biases, so a bias added to isolated nodes would show
        for name, parameter in conv.named_parameters():
            if name.endswith("bias"):
                with torch.no_grad():
                    parameter.normal_()
    _copy_weights(dgl_layer, pyg_layer, attention)
    h = torch.randn(graph.n_nodes, 8)
    cpu = torch.device("cpu")
    dgl_graphs, pyg_graphs = graph.to_backend("dgl", cpu), graph.to_backend("pyg", cpu)
    for relation in ("positive", "negative"):
        dgl_out = dgl_layer.convs[relation](h, dgl_graphs[relation])
        pyg_out = pyg_layer.convs[relation](h, pyg_graphs[relation])
        assert torch.allclose(dgl_out, pyg_out, atol=1e-5), relation
        isolated = torch.bincount(graph.relations()[relation][1], minlength=graph.n_nodes) == 0
        assert isolated.any() and (dgl_out[isolated] == 0).all()
    assert torch.allclose(dgl_layer(h, dgl_graphs), pyg_layer(h, pyg_graphs), atol=1e-5)
