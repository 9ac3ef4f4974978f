"""What LightGCN and NGCF share: learned node embeddings propagated over the normalised positive-rating graph,
mini-batch BPR, a per-fold validation search over `(num_layers, learning_rate, weight_decay)`, and dot-product
scores."""

from __future__ import annotations

import time
import warnings
from abc import abstractmethod
from typing import Any, cast

import torch
from torch import Tensor, nn

from models.base import FoldData, Recommender, Scores, TrainingLog, dot_product_scores
from models.config import TrainingConfig
from models.training import BPRTraining, Trainer, resolve_device
from models.tuning import Axis, Report, tune


def bipartite_adjacency(positive_pairs: Tensor, n_users: int, n_items: int) -> Tensor:
    r"""Symmetrically normalised adjacency :math:`D^{-1/2} A D^{-1/2}` of the user–item graph, as a sparse CSR
    tensor (the format `LGConv`'s `spmm` wants) over `n_users + n_items` nodes (users `0..U-1`, items `U..U+I-1`,
    edges in both directions).

    Normalising once here, instead of inside every `LGConv` call, is the same operator and saves the per-batch
    degree computation.
    """
    from torch_geometric.nn.conv.gcn_conv import gcn_norm  # only when needed: torch_geometric costs ~185 MB

    users, items = positive_pairs[0].long(), positive_pairs[1].long() + n_users
    edge_index = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
    n = n_users + n_items
    # a Tensor `edge_index` gets Tensors back (gcn_norm's overloads are TorchScript comments pyright cannot read)
    edge_index, weight = cast(tuple[Tensor, Tensor], gcn_norm(edge_index, None, n, add_self_loops=False))
    adj = torch.sparse_coo_tensor(edge_index.flip(0), weight, (n, n), check_invariants=False).coalesce()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": works fine for spmm and its gradient
        warnings.simplefilter("ignore", UserWarning)
        return adj.to_sparse_csr()


class SymmetricSpmm(torch.autograd.Function):
    r""":math:`\hat{A} X` for a symmetric sparse :math:`\hat{A}` (the normalised adjacency above), whose gradient
    :math:`\hat{A}^\top G = \hat{A} G` reuses the forward kernel. torch's own backward of a CSR product first
    transposes the matrix, which made a LightGCN step about twice as slow on ML-100K (the backward pass was ~90 %
    of a step)."""

    @staticmethod
    def forward(ctx: Any, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:  # pyright: ignore[reportIncompatibleMethodOverride]  # torch types it `*grad_outputs`
        return None, torch.sparse.mm(ctx.adj, grad)


def symmetric_spmm(adj: Tensor, x: Tensor) -> Tensor:
    """`adj @ x` for a symmetric sparse `adj`, with the cheap backward of :class:`SymmetricSpmm`."""
    return SymmetricSpmm.apply(adj, x)


class PropagationTraining(BPRTraining[nn.Module]):
    """One trial of a :class:`PropagationRecommender`: Adam on its batch loss at one `(num_layers, learning_rate,
    weight_decay)`; validation scores come from the propagated embeddings of the module being trained."""

    def __init__(
        self,
        recommender: PropagationRecommender,
        adj: Tensor,
        num_layers: int,
        learning_rate: float,
        weight_decay: float,
    ) -> None:
        super().__init__(learning_rate, recommender.training.batch_size, recommender.device)
        self.recommender, self.adj, self.num_layers, self.weight_decay = recommender, adj, num_layers, weight_decay

    def build_module(self, data: FoldData) -> nn.Module:
        return self.recommender.build_module(data.n_users + data.n_items, self.num_layers).to(self.device)

    def batch_loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        return self.recommender.batch_loss(self.module, self.adj, self.data.n_users, self.weight_decay, users, pos, neg)

    def scorer(self) -> Scores:
        embedding, n_users, name = self.embedding(), self.data.n_users, self.recommender.name
        return lambda users: dot_product_scores(embedding, users, n_users, name)

    def embedding(self) -> Tensor:
        """Final node embeddings `[n_nodes, d]` of the module as it is now (call in eval mode, no grad)."""
        return self.recommender.propagate(self.module, self.adj).detach()

    def finalize(self, log: TrainingLog) -> None:
        log.hyperparameters = {
            "num_layers": self.num_layers,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "embedding_dim": self.recommender.training.embedding_dim,
            **self.recommender.extra_hyperparameters(),
        }


class PropagationRecommender(Recommender):
    r"""Scores :math:`\hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i` from the propagated embeddings.

    Each trial `(num_layers, learning_rate, weight_decay)` of the config's search space is fitted with Adam and
    early stopping on validation NDCG@10 (:class:`PropagationTraining`); the best on validation is kept. Final
    embeddings are computed once after training, so :meth:`score` is a matrix product. Subclasses give the module,
    its batch loss and its propagation.
    """

    def __init__(self, cfg: Any, training: TrainingConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.training = training or TrainingConfig()
        self.device = resolve_device(self.training.device)
        self.module: nn.Module | None = None
        self.n_users = 0
        self._embedding: Tensor | None = None

    @abstractmethod
    def build_module(self, n_nodes: int, num_layers: int) -> nn.Module:
        """A fresh module over `n_nodes` nodes (users first, then items)."""

    @abstractmethod
    def batch_loss(
        self, module: nn.Module, adj: Tensor, n_users: int, weight_decay: float, users: Tensor, pos: Tensor, neg: Tensor
    ) -> Tensor:
        """The loss of a batch of `(user, positive item, negative item)` indices (items not offset by users)."""

    @abstractmethod
    def propagate(self, module: nn.Module, adj: Tensor) -> Tensor:
        """Final node embeddings `[n_nodes, d]` in eval mode."""

    def extra_hyperparameters(self) -> dict[str, Any]:
        """Settings logged with each trial's searched ones."""
        return {}

    def space(self) -> dict[str, Axis]:
        """The hyperparameter axes searched per fold."""
        return {
            "num_layers": self.cfg.num_layers,
            "learning_rate": self.cfg.learning_rate,
            "weight_decay": self.cfg.weight_decay,
        }

    def fit(self, data: FoldData) -> PropagationRecommender:
        start = time.perf_counter()
        self.n_users = data.n_users
        adj = bipartite_adjacency(data.positive_pairs, data.n_users, data.n_items).to(self.device)
        self.module, self.training_log = tune(
            self.name,
            self.space(),
            lambda params, report: self._fit_one(data, adj, report, **params),
            data,
            self.training,
            self.cfg.n_trials,
            start,
        )
        self._refresh(adj)
        return self

    def _fit_one(
        self, data: FoldData, adj: Tensor, report: Report, num_layers: int, learning_rate: float, weight_decay: float
    ) -> tuple[nn.Module, TrainingLog]:
        fit = PropagationTraining(self, adj, num_layers, learning_rate, weight_decay)
        log = Trainer(data, self.training, report).fit(fit)
        return fit.module, log

    @torch.no_grad()
    def _refresh(self, adj: Tensor) -> None:
        assert self.module is not None
        self.module.eval()
        self._embedding = self.propagate(self.module, adj).detach()

    @torch.no_grad()
    def score(self, users: Tensor) -> Tensor:
        return dot_product_scores(self._embedding, users, self.n_users, self.name)
