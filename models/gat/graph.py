r"""The user–item graph the GAT propagates over.

Nodes are users `0..U-1` followed by items `U..U+I-1`. Two relations, each with edges in both directions so users
and items update each other:

* **positive**: training ratings :math:`r_{ui} \ge \tau_+` (`FoldData.positive_pairs`),
* **negative**: training ratings :math:`r_{ui} \le \tau_-` (`FoldData.negative_pairs`, explicit dislikes).

Neutral ratings are not edges. Each relation gets its own attention in every layer (see `models.gat.network`), so
what a disliked neighbour contributes is learned separately from what a liked one does instead of being averaged in
with it. The authors' graph (`build_rating_graph`, for `gat-paper`) is different: every training rating is an edge
of one relation `rated`, with the rating as edge feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from models.base import FoldData
from models.gat.attention import EdgeList

Backend = Literal["dgl", "pyg"]


def bidirectional_edges(pairs: Tensor, n_users: int) -> Tensor:
    """`[2, 2E]` (source, destination) node ids: every (user, item) pair as user→item and item→user."""
    users, items = pairs[0].long(), pairs[1].long() + n_users
    return torch.stack([torch.cat([users, items]), torch.cat([items, users])])


@dataclass(frozen=True)
class SignedGraph:
    """Edge lists of both relations over `n_nodes = n_users + n_items` nodes."""

    n_users: int
    n_items: int
    positive: Tensor
    negative: Tensor | None
    ratings: Tensor | None = None
    """`[E]` rating of every `positive` edge when the graph is the paper's `rated` graph (`build_rating_graph`)."""

    @property
    def n_nodes(self) -> int:
        return self.n_users + self.n_items

    def relations(self) -> dict[str, Tensor]:
        """Relation name → `[2, E]` edge index, positive first; the negative one only when it is used."""
        if self.ratings is not None:
            return {"rated": self.positive}
        out = {"positive": self.positive}
        if self.negative is not None:
            out["negative"] = self.negative
        return out

    def to_backend(self, backend: Backend | Literal["torch"], device: torch.device) -> dict[str, Any]:
        """Relation name → what the layer takes: an `EdgeList` (`torch`, the normalised layer), a `DGLGraph`, or a
        PyG `edge_index` (an `(edge_index, ratings [E, 1])` pair on the rating graph)."""
        if backend == "torch":
            return {name: EdgeList.of(edges, self.n_nodes).to(device) for name, edges in self.relations().items()}
        if backend == "pyg":
            if self.ratings is not None:
                return {"rated": (self.positive.to(device), self.ratings.float().unsqueeze(1).to(device))}
            return {name: edges.to(device) for name, edges in self.relations().items()}
        from e2ep.dgl_compat import import_dgl

        dgl = import_dgl()
        return {
            name: dgl.graph((edges[0], edges[1]), num_nodes=self.n_nodes).to(device)
            for name, edges in self.relations().items()
        }


def build_signed_graph(data: FoldData, negative_edges: bool = True) -> SignedGraph:
    """The fold's signed graph; `negative_edges=False` leaves the dislikes out (positive relation only)."""
    negative = None
    if negative_edges:
        negative = bidirectional_edges(data.negative_pairs, data.n_users)
    return SignedGraph(data.n_users, data.n_items, bidirectional_edges(data.positive_pairs, data.n_users), negative)


def build_rating_graph(data: FoldData) -> SignedGraph:
    """The authors' graph: every training rating (any value) as an edge in both directions, the rating as feature."""
    ratings = torch.from_numpy(data.train["rating"].to_numpy().astype("float32"))
    return SignedGraph(
        data.n_users,
        data.n_items,
        bidirectional_edges(data.train_pairs, data.n_users),
        None,
        ratings=torch.cat([ratings, ratings]),
    )
