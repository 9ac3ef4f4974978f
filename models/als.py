"""Implicit-feedback ALS (Hu, Koren & Volinsky, ICDM 2008) via the `implicit` library, tuned per fold on
validation NDCG@10 with the number of sweeps chosen by early stopping."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from e2ep.configbase import Strict
from models.base import FoldData, Recommender, Scores, TrainingLog
from models.config import ALSConfig, TrainingConfig
from models.training import TrainableModel, Trainer
from models.tuning import Axis, Report, tune


def confidence_matrix(positive_pairs: Tensor, n_users: int, n_items: int, alpha: float) -> sp.csr_matrix:
    r"""Users × items CSR matrix holding :math:`c_{ui} = 1 + \alpha` on positive pairs (nothing elsewhere).

    `implicit` reads a stored value as the confidence of a preference :math:`p_{ui} = 1` and treats every absent
    pair as :math:`p_{ui} = 0` with confidence 1, which is Hu et al.'s :math:`c_{ui} = 1 + \alpha r_{ui}` with
    binary :math:`r_{ui}`.
    """
    users, items = positive_pairs[0].numpy(), positive_pairs[1].numpy()
    values = np.full(len(users), 1.0 + alpha, dtype=np.float32)
    matrix = sp.csr_matrix((values, (users, items)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0 + alpha  # a duplicated pair is still one preference
    return matrix


def _use_gpu(device: str) -> bool:
    """implicit's CUDA build only when it was compiled with CUDA and the device setting allows it."""
    if device == "cpu":
        return False
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA)


def _as_numpy(factors: Any) -> np.ndarray:
    """Factors of either implicit backend as a NumPy array (the GPU one holds an `implicit.gpu.Matrix`)."""
    return factors if isinstance(factors, np.ndarray) else factors.to_numpy()


class _Factors(torch.nn.Module):
    """The current user and item factors as buffers, so :class:`EarlyStopping` can snapshot and restore them."""

    user: Tensor
    item: Tensor

    def __init__(self, n_users: int, n_items: int, factors: int) -> None:
        super().__init__()
        self.register_buffer("user", torch.zeros(n_users, factors))
        self.register_buffer("item", torch.zeros(n_items, factors))

    def assign(self, user: np.ndarray, item: np.ndarray) -> None:
        self.user.copy_(torch.from_numpy(np.asarray(user, dtype=np.float32)))
        self.item.copy_(torch.from_numpy(np.asarray(item, dtype=np.float32)))


class ALSTraining(TrainableModel[_Factors]):
    """One ALS trial as :class:`Trainer` drives it: an epoch is one sweep of implicit's solver, which initialises
    the factors (from `seed`) only when unset, so each one-sweep fit continues the previous one."""

    def __init__(
        self, factors: int, regularization: float, alpha: float, num_threads: int, use_gpu: bool, seed: int
    ) -> None:
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.num_threads, self.use_gpu, self.seed = num_threads, use_gpu, seed

    def setup(self, data: FoldData, generator: torch.Generator) -> None:
        from implicit.als import AlternatingLeastSquares

        self.model = AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=1.0,
            iterations=1,
            use_gpu=self.use_gpu,
            num_threads=self.num_threads,
            random_state=self.seed,
        )
        self.matrix = confidence_matrix(data.positive_pairs, data.n_users, data.n_items, self.alpha)
        self.module = _Factors(data.n_users, data.n_items, self.factors)

    def train_epoch(self) -> float:
        self.model.fit(self.matrix, show_progress=False)
        self.module.assign(_as_numpy(self.model.user_factors), _as_numpy(self.model.item_factors))
        return float("nan")  # implicit reports no loss

    def scorer(self) -> Scores:
        factors = self.module
        return lambda users: factors.user[users.long()] @ factors.item.T

    def finalize(self, log: TrainingLog) -> None:
        log.hyperparameters = {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": log.best_epoch or log.epochs_run,
            "backend": "gpu" if self.use_gpu else "cpu",
        }


class ALSRecommender(Recommender):
    r"""Weighted matrix factorisation of the binary positive-rating matrix, minimising

    .. math::
        \sum_{u,i} c_{ui}\,(p_{ui} - \mathbf{x}_u^\top \mathbf{y}_i)^2
        + \lambda\Big(\sum_u \lVert \mathbf{x}_u\rVert^2 + \sum_i \lVert \mathbf{y}_i\rVert^2\Big)

    by alternating least squares (implicit's conjugate-gradient solver); score
    :math:`\hat{y}_{ui} = \mathbf{x}_u^\top \mathbf{y}_i`. Each trial `(factors, regularization, alpha)` of the
    config's search space runs one sweep at a time, is evaluated on validation NDCG@10 after each sweep and stops
    after `patience` sweeps without improvement, keeping its best sweep; the best trial is kept. Initial factors come
    from `training.seed`, so fits are deterministic. BLAS is limited to one thread during fits (implicit's own
    threads do the parallel work; a threaded BLAS underneath slows it down).
    """

    name: ClassVar[str] = "als"
    config_field: ClassVar[str | None] = "als"
    config_class: ClassVar[type[Strict] | None] = ALSConfig

    def __init__(self, cfg: ALSConfig | None = None, training: TrainingConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ALSConfig()
        self.training = training or TrainingConfig()
        self.factors: _Factors | None = None

    def space(self) -> dict[str, Axis]:
        """The hyperparameter axes searched per fold."""
        return {"factors": self.cfg.factors, "regularization": self.cfg.regularization, "alpha": self.cfg.alpha}

    def fit(self, data: FoldData) -> ALSRecommender:
        start = time.perf_counter()
        # loads scipy's BLAS first, so the limit below covers it too
        import implicit.als  # noqa: F401  # pyright: ignore[reportUnusedImport]

        with threadpool_limits(limits=1, user_api="blas"):
            self.factors, self.training_log = tune(
                self.name,
                self.space(),
                lambda params, report: self._fit_one(data, report, **params),
                data,
                self.training,
                self.cfg.n_trials,
                start,
            )
        return self

    def _fit_one(
        self, data: FoldData, report: Report, factors: int, regularization: float, alpha: float
    ) -> tuple[_Factors, TrainingLog]:
        # one evaluation per sweep, with the model's own budget and patience
        training = self.training.model_copy(
            update={"max_epochs": self.cfg.iterations, "eval_every": 1, "patience": self.cfg.patience}
        )
        fit = ALSTraining(
            factors, regularization, alpha, self.cfg.num_threads, _use_gpu(self.training.device), self.training.seed
        )
        log = Trainer(data, training, report).fit(fit)
        return fit.module, log

    @torch.no_grad()
    def score(self, users: Tensor) -> Tensor:
        if self.factors is None:
            raise RuntimeError("ALS.score called before fit")
        return self.factors.user[users.long()] @ self.factors.item.T
