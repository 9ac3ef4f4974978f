"""LightGCN (He et al., 2020) on the positive-rating bipartite graph, via PyG's `LightGCN`, tuned per fold on
validation NDCG@10."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

import torch
from torch import Tensor, nn

from e2ep.configbase import Strict
from models.config import LightGCNConfig, TrainingConfig
from models.propagation import PropagationRecommender, symmetric_spmm

if TYPE_CHECKING:
    from torch_geometric.nn.models import LightGCN as PyGLightGCN


class LightGCNRecommender(PropagationRecommender):
    r"""LightGCN with layer-mean aggregation :math:`\mathbf{e} = \frac{1}{L+1}\sum_{l=0}^{L} \mathbf{e}^{(l)}` and
    score :math:`\hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i`.

    Mini-batch BPR through PyG's `recommendation_loss` (L2 on the batch's layer-0 embeddings, `lambda_reg` =
    weight decay), Adam, early stopping on validation NDCG@10. `(num_layers, learning_rate, weight_decay)` are
    searched per fold (models/tuning.py); the best on validation is kept. Final embeddings are computed once after
    training, so :meth:`score` is a matrix product.
    """

    name: ClassVar[str] = "lightgcn"
    config_field: ClassVar[str | None] = "lightgcn"
    config_class: ClassVar[type[Strict] | None] = LightGCNConfig

    def __init__(self, cfg: LightGCNConfig | None = None, training: TrainingConfig | None = None) -> None:
        super().__init__(cfg or LightGCNConfig(), training)

    def build_module(self, n_nodes: int, num_layers: int) -> PyGLightGCN:
        # imported here: torch_geometric (with the transformers and pandas it loads) costs ~185 MB in each process
        from torch_geometric.nn.models import LightGCN as PyGLightGCN

        return PyGLightGCN(n_nodes, self.training.embedding_dim, num_layers, normalize=False)

    def batch_loss(
        self, module: nn.Module, adj: Tensor, n_users: int, weight_decay: float, users: Tensor, pos: Tensor, neg: Tensor
    ) -> Tensor:
        emb = self.propagate(module, adj)
        u, i, j = emb[users], emb[pos + n_users], emb[neg + n_users]
        pos_rank, neg_rank = (u * i).sum(-1), (u * j).sum(-1)
        node_id = torch.cat([users, pos + n_users, neg + n_users])
        lightgcn = cast("PyGLightGCN", module)  # built by `build_module`
        return lightgcn.recommendation_loss(pos_rank, neg_rank, node_id=node_id, lambda_reg=weight_decay)

    def propagate(self, module: nn.Module, adj: Tensor) -> Tensor:
        r"""PyG's `LightGCN.get_embedding` (:math:`\sum_l \alpha_l \hat{A}^l \mathbf{E}`) with the symmetric
        product's cheaper gradient."""
        lightgcn = cast("PyGLightGCN", module)  # built by `build_module`
        alpha = cast(Tensor, lightgcn.alpha)  # a buffer
        x = lightgcn.embedding.weight
        out = x * alpha[0]
        for layer in range(lightgcn.num_layers):
            x = symmetric_spmm(adj, x)
            out = out + x * alpha[layer + 1]
        return out
