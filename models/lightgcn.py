"""LightGCN (He et al., 2020) on the positive-rating bipartite graph, via PyG's `LightGCN`, grid-searched on
validation NDCG@10."""

from __future__ import annotations

import time
import warnings
from typing import ClassVar

import torch
from torch import Tensor
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.models import LightGCN as PyGLightGCN

from e2ep.config import LightGCNConfig, TrainingConfig
from models.base import FoldData, Recommender
from models.training import (TrainingLog, grid_search, parameter_grid, resolve_device, seed_everything, train_bpr,
                             validation_ndcg)


def bipartite_adjacency(positive_pairs: Tensor, n_users: int, n_items: int) -> Tensor:
    r"""Symmetrically normalised adjacency :math:`D^{-1/2} A D^{-1/2}` of the user–item graph, as a sparse CSR
    tensor (the format `LGConv`'s `spmm` wants) over `n_users + n_items` nodes (users `0..U-1`, items `U..U+I-1`, edges in both directions).

    Normalising once here, instead of inside every `LGConv` call, is the same operator and saves the per-batch
    degree computation.
    """
    users, items = positive_pairs[0].long(), positive_pairs[1].long() + n_users
    edge_index = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
    n = n_users + n_items
    edge_index, weight = gcn_norm(edge_index, None, n, add_self_loops=False)
    adj = torch.sparse_coo_tensor(edge_index.flip(0), weight, (n, n), check_invariants=False).coalesce()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": works fine for spmm and its gradient
        warnings.simplefilter("ignore", UserWarning)
        return adj.to_sparse_csr()


class LightGCNRecommender(Recommender):
    r"""LightGCN with layer-mean aggregation :math:`\mathbf{e} = \frac{1}{L+1}\sum_{l=0}^{L} \mathbf{e}^{(l)}` and
    score :math:`\hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i`.

    Mini-batch BPR through PyG's `recommendation_loss` (L2 on the batch's layer-0 embeddings, `lambda_reg` =
    weight decay), Adam, early stopping on validation NDCG@10. Every `(num_layers, learning_rate, weight_decay)`
    of the config's grid is fitted; the best on validation is kept. Final embeddings are computed once after
    training, so :meth:`score` is a matrix product.
    """

    name: ClassVar[str] = "lightgcn"

    def __init__(self, cfg: LightGCNConfig | None = None, training: TrainingConfig | None = None) -> None:
        self.cfg = cfg or LightGCNConfig()
        self.training = training or TrainingConfig()
        self.device = resolve_device(self.training.device)
        self.module: PyGLightGCN | None = None
        self.n_users = 0
        self._embedding: Tensor | None = None
        self.training_log = TrainingLog()

    def grid(self) -> list[dict[str, float]]:
        """The hyperparameter combinations tried, in order."""
        return parameter_grid(num_layers=self.cfg.num_layers, learning_rate=self.cfg.learning_rate,
                              weight_decay=self.cfg.weight_decay)

    def fit(self, data: FoldData) -> LightGCNRecommender:
        start = time.perf_counter()
        self.n_users = data.n_users
        adj = bipartite_adjacency(data.positive_pairs, data.n_users, data.n_items).to(self.device)
        self.module, self.training_log = grid_search(
            self.grid(), lambda **params: self._fit_one(data, adj, **params), start)
        self._refresh(adj)
        return self

    def _fit_one(
        self, data: FoldData, adj: Tensor, num_layers: int, learning_rate: float, weight_decay: float
    ) -> tuple[PyGLightGCN, TrainingLog]:
        generator = seed_everything(self.training.seed)
        n_users = data.n_users
        module = PyGLightGCN(n_users + data.n_items, self.training.embedding_dim, num_layers,
                             normalize=False).to(self.device)
        self.module = module

        def batch_loss(users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
            emb = module.get_embedding(adj)
            u, i, j = emb[users], emb[pos + n_users], emb[neg + n_users]
            pos_rank, neg_rank = (u * i).sum(-1), (u * j).sum(-1)
            node_id = torch.cat([users, pos + n_users, neg + n_users])
            return module.recommendation_loss(pos_rank, neg_rank, node_id=node_id, lambda_reg=weight_decay)

        def evaluate() -> float:
            self._refresh(adj)
            return validation_ndcg(self, data)

        log = train_bpr(module, batch_loss, evaluate, data, self.training, learning_rate, self.device, generator)
        log.hyperparameters = {"num_layers": num_layers, "learning_rate": learning_rate,
                               "weight_decay": weight_decay, "embedding_dim": self.training.embedding_dim}
        return module, log

    @torch.no_grad()
    def _refresh(self, adj: Tensor) -> None:
        assert self.module is not None
        self.module.eval()
        self._embedding = self.module.get_embedding(adj).detach()

    @torch.no_grad()
    def score(self, users: Tensor) -> Tensor:
        if self._embedding is None:
            raise RuntimeError("LightGCN.score called before fit")
        emb = self._embedding
        return emb[users.long().to(emb.device)] @ emb[self.n_users :].T
