"""DGL loads through `e2ep.dgl_compat` on this torch, runs a GAT convolution, and fails with a clear error."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from e2ep.dgl_compat import import_dgl
from e2ep.errors import ConfigError


def test_import_dgl_sets_the_backend_and_skips_graphbolt() -> None:
    dgl = import_dgl()
    assert import_dgl() is dgl and sys.modules["dgl"] is dgl
    assert os.environ["DGLBACKEND"] == "pytorch" and dgl.backend.backend_name == "pytorch"
    # nothing else imports DGL, so the placeholder is what stands in for graphbolt
    assert "Placeholder" in (sys.modules["dgl.graphbolt"].__doc__ or "")


def test_dgl_attention_matches_hand_computed_softmax() -> None:
    # Node 2 receives from 0 and 1: with one head and zero attention vector, attention is uniform (1/2 each).
    dgl = import_dgl()
    conv = dgl.nn.pytorch.GATConv(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.fc.weight.copy_(torch.eye(2))
        conv.attn_l.zero_()
        conv.attn_r.zero_()
    g = dgl.graph((torch.tensor([0, 1]), torch.tensor([2, 2])), num_nodes=3)
    g = dgl.add_self_loop(g)  # every node needs an in-edge unless allow_zero_in_degree
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0], [6.0, 0.0]])
    out = conv(g, x).squeeze(1)
    assert torch.allclose(out[2], (x[0] + x[1] + x[2]) / 3)
    assert torch.allclose(out[0], x[0])


def test_unloadable_dgl_raises_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dgl", None)  # what Python does for a package that must not be imported
    with pytest.raises(ConfigError, match="DGL could not be imported.*backend=pyg"):
        import_dgl.__wrapped__()
