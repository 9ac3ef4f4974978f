"""NGCF (Wang et al., SIGIR 2019): neural graph collaborative filtering on the positive-rating bipartite graph,
tuned per fold on validation NDCG@10."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from e2ep.configbase import Strict
from models.config import NGCFConfig, TrainingConfig
from models.propagation import PropagationRecommender, symmetric_spmm

LEAKY_SLOPE = 0.2  # the reference implementation's LeakyReLU slope


def drop_adjacency_entries(adj: Tensor, p: float) -> Tensor:
    r"""Node dropout as NGCF implements it: each nonzero of the sparse CSR `adj` is zeroed with probability `p`,
    the rest scaled by :math:`1/(1-p)` so the expected operator is unchanged. Draws from torch's global RNG."""
    if p <= 0.0:
        return adj
    values = F.dropout(adj.values(), p=p, training=True)
    return torch.sparse_csr_tensor(
        adj.crow_indices(), adj.col_indices(), values, adj.shape, check_invariants=False
    )  # same structure as `adj`, already valid


class NGCFModule(torch.nn.Module):
    r"""Embedding propagation over the normalised user–item graph :math:`\mathcal{L} = D^{-1/2} A D^{-1/2}`.

    Each layer :math:`l = 0..L-1` computes

    .. math::
        E^{(l+1)} = \mathrm{LeakyReLU}\Big((\mathcal{L} + I)\,E^{(l)} W_1^{(l)}
                    + \big((\mathcal{L} E^{(l)}) \odot E^{(l)}\big) W_2^{(l)}\Big)

    (with biases), then message dropout and row-wise L2 normalisation. The final representation concatenates all
    layers, :math:`\mathbf{e} = [\mathbf{e}^{(0)} \Vert \dots \Vert \mathbf{e}^{(L)}]` (dimension
    :math:`d(L+1)`), and the score is :math:`\hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i`. Users are nodes
    `0..U-1`, items `U..U+I-1`.
    """

    def __init__(self, n_nodes: int, embedding_dim: int, num_layers: int, message_dropout: float = 0.1) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.message_dropout = message_dropout
        self.embedding = torch.nn.Embedding(n_nodes, embedding_dim)
        self.w1 = torch.nn.ModuleList(torch.nn.Linear(embedding_dim, embedding_dim) for _ in range(num_layers))
        self.w2 = torch.nn.ModuleList(torch.nn.Linear(embedding_dim, embedding_dim) for _ in range(num_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.embedding.weight)
        for linear in cast(list[torch.nn.Linear], [*self.w1, *self.w2]):
            torch.nn.init.xavier_uniform_(linear.weight)
            torch.nn.init.zeros_(linear.bias)

    def forward(self, adj: Tensor, symmetric: bool = True) -> Tensor:
        """Final node representations `[n_nodes, d * (num_layers + 1)]` given the (possibly dropped-out) `adj`
        (`symmetric`: the full normalised adjacency, whose product has a cheaper gradient)."""
        ego = self.embedding.weight
        layers = [ego]
        for w1, w2 in zip(self.w1, self.w2, strict=True):
            side = symmetric_spmm(adj, ego) if symmetric else adj @ ego
            ego = F.leaky_relu(w1(side + ego) + w2(side * ego), LEAKY_SLOPE)
            ego = F.dropout(ego, self.message_dropout, self.training)
            layers.append(F.normalize(ego, p=2, dim=1))
        return torch.cat(layers, dim=1)


class NGCFRecommender(PropagationRecommender):
    r"""NGCF trained with mini-batch BPR and L2 on the batch's layer-0 embeddings:

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_{(u,i,j)} \ln\sigma(\hat{y}_{ui} - \hat{y}_{uj})
        + \frac{\lambda}{B}\left(\lVert \mathbf{e}^{(0)}_{u}\rVert^2 + \lVert \mathbf{e}^{(0)}_{i}\rVert^2
        + \lVert \mathbf{e}^{(0)}_{j}\rVert^2\right)

    summed over the batch's users and items. Adam, node dropout on the adjacency and message dropout while
    training, early stopping on validation NDCG@10. `(num_layers, learning_rate, weight_decay)` are searched
    per fold (models/tuning.py); the best on validation is kept. Final embeddings are computed once after training
    (no dropout), so :meth:`score` is a matrix product.
    """

    name: ClassVar[str] = "ngcf"
    config_field: ClassVar[str | None] = "ngcf"
    config_class: ClassVar[type[Strict] | None] = NGCFConfig

    def __init__(self, cfg: NGCFConfig | None = None, training: TrainingConfig | None = None) -> None:
        super().__init__(cfg or NGCFConfig(), training)

    def build_module(self, n_nodes: int, num_layers: int) -> NGCFModule:
        return NGCFModule(n_nodes, self.training.embedding_dim, num_layers, self.cfg.message_dropout)

    def batch_loss(
        self, module: nn.Module, adj: Tensor, n_users: int, weight_decay: float, users: Tensor, pos: Tensor, neg: Tensor
    ) -> Tensor:
        node_dropout = self.cfg.node_dropout
        emb = module(drop_adjacency_entries(adj, node_dropout), symmetric=node_dropout == 0)
        u, i, j = emb[users], emb[pos + n_users], emb[neg + n_users]
        log_prob = F.logsigmoid((u * i).sum(-1) - (u * j).sum(-1)).mean()
        ego = cast(NGCFModule, module).embedding.weight  # built by `build_module`
        reg = (
            ego[users].pow(2).sum() + ego[pos + n_users].pow(2).sum() + ego[neg + n_users].pow(2).sum()
        ) / users.numel()
        return -log_prob + weight_decay * reg

    def propagate(self, module: nn.Module, adj: Tensor) -> Tensor:
        return module(adj)

    def extra_hyperparameters(self) -> dict[str, Any]:
        return {"message_dropout": self.cfg.message_dropout, "node_dropout": self.cfg.node_dropout}
