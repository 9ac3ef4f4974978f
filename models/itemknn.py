"""Item-item nearest neighbours through `implicit` (cosine or BM25-weighted cosine), searched per fold."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from e2ep.configbase import Strict
from models.config import ItemKNNConfig, TrainingConfig
from models.item_similarity import ItemSimilarityRecommender
from models.tuning import Axis


class ItemKNNRecommender(ItemSimilarityRecommender):
    r"""Item–item KNN on the binary positive-rating matrix :math:`X`: `implicit`'s `CosineRecommender`
    (:math:`s_{ij} = \cos(X_{\cdot i}, X_{\cdot j})`) or `BM25Recommender` (the cosine after BM25-weighting each
    item's column, with parameters `K1`, `B`), keeping each item's `neighbours` most similar items (the item itself
    among them); score :math:`\hat{y}_{uj} = \sum_i x_{ui}\, s_{ij}`, as implicit's `recommend` computes it.
    The similarity, the neighbourhood size and (for BM25) `K1` and `B` are searched per fold.
    """

    name: ClassVar[str] = "itemknn"
    config_field: ClassVar[str | None] = "itemknn"
    config_class: ClassVar[type[Strict] | None] = ItemKNNConfig
    conditions = {"bm25_k1": ("similarity", "bm25"), "bm25_b": ("similarity", "bm25")}

    def __init__(self, cfg: ItemKNNConfig | None = None, training: TrainingConfig | None = None) -> None:
        super().__init__(cfg or ItemKNNConfig(), training)

    def space(self) -> dict[str, Axis]:
        return {
            "similarity": list(self.cfg.similarity),
            "neighbours": self.cfg.neighbours,
            "bm25_k1": self.cfg.bm25_k1,
            "bm25_b": self.cfg.bm25_b,
        }

    def weights_for(
        self, prepared: Any, similarity: str, neighbours: int, bm25_k1: float = 1.2, bm25_b: float = 0.75
    ) -> np.ndarray:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
        from implicit.utils import ParameterWarning

        interactions: sp.csr_matrix = prepared
        model = (
            CosineRecommender(K=neighbours, num_threads=1)
            if similarity == "cosine"
            else BM25Recommender(K=neighbours, K1=bm25_k1, B=bm25_b, num_threads=1)
        )
        with warnings.catch_warnings():  # implicit re-weights into a COO matrix itself, then warns about it
            warnings.simplefilter("ignore", ParameterWarning)
            model.fit(interactions, show_progress=False)
        assert model.similarity is not None  # set by `fit`
        return model.similarity.toarray().astype(np.float32)
