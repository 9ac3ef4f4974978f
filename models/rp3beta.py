"""RP3beta (Paudel, Christoffel, Newell & Bernstein, ACM TiiS 2016): a popularity-penalised three-step random walk
on the user–item graph, as an item–item similarity; alpha, beta and the neighbourhood searched per fold.

Written here (scipy and numpy, a dozen lines): neither Cornac nor implicit, the libraries we already use, ships it."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
import scipy.sparse as sp

from e2ep.configbase import Strict
from models.config import RP3betaConfig, TrainingConfig
from models.item_similarity import ItemSimilarityRecommender, keep_top_k_per_row
from models.tuning import Axis


def rp3beta_weights(interactions: sp.csr_matrix, alpha: float, beta: float, neighbours: int) -> np.ndarray:
    r"""Dense `[n_items, n_items]` RP3beta weights of a binary users × items matrix :math:`X`.

    With the row-stochastic transitions :math:`P_{ui} = X / \mathrm{deg}(u)` and
    :math:`P_{iu} = X^\top / \mathrm{deg}(i)`, each raised element-wise to :math:`\alpha`,
    :math:`W_{ij} = (P_{iu}^{\alpha} P_{ui}^{\alpha})_{ij} / \mathrm{deg}(j)^{\beta}` for :math:`i \ne j`
    (:math:`W_{ii} = 0`), then only each row's `neighbours` largest weights are kept. Items without positives
    have zero rows and columns.
    """
    matrix = sp.csr_matrix(interactions, dtype=np.float64)
    user_degree = np.asarray(matrix.sum(axis=1)).ravel()
    item_degree = np.asarray(matrix.sum(axis=0)).ravel()
    user_to_item = cast(sp.csr_matrix, sp.diags(1.0 / np.maximum(user_degree, 1.0)) @ matrix)
    item_to_user = cast(sp.csr_matrix, sp.diags(1.0 / np.maximum(item_degree, 1.0)) @ matrix.T.tocsr())
    user_to_item.data **= alpha
    item_to_user.data **= alpha
    weights = cast(sp.csr_matrix, item_to_user @ user_to_item).toarray()
    with np.errstate(divide="ignore"):
        penalty = np.where(item_degree > 0, np.power(np.maximum(item_degree, 1.0), -beta), 0.0)
    weights *= penalty[None, :]
    np.fill_diagonal(weights, 0.0)
    return keep_top_k_per_row(weights, neighbours)


class RP3betaRecommender(ItemSimilarityRecommender):
    r"""Score :math:`\hat{y}_{u\cdot} = \mathbf{x}_u^\top W` with the RP3beta weights :math:`W` of
    :func:`rp3beta_weights` (a user's walk: to a liked item, to a user who liked it, to that user's items, with
    popular destinations penalised by :math:`\mathrm{deg}(j)^{-\beta}`)."""

    name: ClassVar[str] = "rp3beta"
    config_field: ClassVar[str | None] = "rp3beta"
    config_class: ClassVar[type[Strict] | None] = RP3betaConfig

    def __init__(self, cfg: RP3betaConfig | None = None, training: TrainingConfig | None = None) -> None:
        super().__init__(cfg or RP3betaConfig(), training)

    def space(self) -> dict[str, Axis]:
        return {"alpha": self.cfg.alpha, "beta": self.cfg.beta, "neighbours": self.cfg.neighbours}

    def weights_for(self, prepared: Any, alpha: float, beta: float, neighbours: int) -> np.ndarray:
        return rp3beta_weights(prepared, alpha, beta, neighbours)
