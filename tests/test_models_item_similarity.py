"""EASE, ItemKNN and RP3beta against references computed here from their definitions, on tiny matrices (learning
the planted clusters is in tests/test_models_contract.py)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from models.base import FoldData
from models.config import EASEConfig, ItemKNNConfig, RP3betaConfig
from models.ease import EASERecommender
from models.item_similarity import keep_top_k_per_row, positive_matrix
from models.itemknn import ItemKNNRecommender
from models.rp3beta import RP3betaRecommender, rp3beta_weights

# 4 users x 5 items; item 4 has no positive, one rating (user 3, item 0) is below the positive threshold.
RATINGS = [(0, 0, 5), (0, 1, 4), (0, 2, 4), (1, 1, 5), (1, 3, 4), (2, 0, 4), (2, 2, 5), (2, 3, 5), (3, 2, 4), (3, 0, 2)]
X = np.array([[1, 1, 1, 0, 0], [0, 1, 0, 1, 0], [1, 0, 1, 1, 0], [0, 0, 1, 0, 0]], dtype=float)


def tiny_fold(validation: list[tuple[int, int, float]] | None = None) -> FoldData:
    schema = {"user_idx": pl.Int64, "item_idx": pl.Int64, "rating": pl.Float64}
    return FoldData(
        n_users=4,
        n_items=5,
        train=pl.DataFrame(RATINGS, schema=schema, orient="row"),
        validation=pl.DataFrame(validation or [(0, 3, 5.0)], schema=schema, orient="row"),
    )


def random_fold(n_users: int = 40, n_items: int = 9, seed: int = 0) -> tuple[FoldData, np.ndarray]:
    """Random ratings (about 40 % dense) and their binary positive matrix, for neighbourhoods without ties."""
    rng = np.random.default_rng(seed)
    rated = rng.random((n_users, n_items)) < 0.4
    ratings = rng.integers(1, 6, (n_users, n_items))
    rows = [(u, i, float(ratings[u, i])) for u, i in zip(*np.nonzero(rated), strict=True)]
    schema = {"user_idx": pl.Int64, "item_idx": pl.Int64, "rating": pl.Float64}
    data = FoldData(
        n_users=n_users,
        n_items=n_items,
        train=pl.DataFrame(rows, schema=schema, orient="row"),
        validation=pl.DataFrame([rows[0]], schema=schema, orient="row"),
    )
    return data, (rated & (ratings >= 4)).astype(float)


def assert_top_k_of(actual: np.ndarray, full: np.ndarray, k: int) -> None:
    """Each row of `actual` keeps at most k entries, each equal to `full`'s, and they are `full`'s k largest
    (which of several tied entries is kept is left to the implementation)."""
    assert ((actual != 0).sum(1) <= k).all()
    kept = actual != 0
    assert np.allclose(actual[kept], full[kept], atol=1e-5)
    top = lambda m: -np.sort(-m, axis=1)[:, :k]  # noqa: E731
    assert np.allclose(top(actual), top(full), atol=1e-5)


def test_positive_matrix_is_the_binary_positive_ratings() -> None:
    assert np.array_equal(positive_matrix(tiny_fold()).toarray(), X)


def test_ease_matches_the_closed_form_on_a_4x5_example() -> None:
    lam = 2.0
    model = EASERecommender(EASEConfig(l2=[lam], n_trials=1)).fit(tiny_fold())
    # Steck's closed form, from the definition: P = (X'X + lambda I)^-1, B = -P / diag(P) column-wise, diag(B) = 0.
    p = np.linalg.inv(X.T @ X + lam * np.eye(5))
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    assert np.allclose(model.weights, expected, atol=1e-6)
    assert np.allclose(model.score(torch.arange(4)).numpy(), X @ expected, atol=1e-5)
    # B solves the constrained ridge problem: the gradient (X'X + lambda I) B - X'X vanishes off the diagonal.
    gradient = (X.T @ X + lam * np.eye(5)) @ expected - X.T @ X
    assert np.allclose(gradient - np.diag(np.diag(gradient)), 0.0, atol=1e-9)
    assert model.training_log.hyperparameters == {"l2": lam}


def brute_force_cosine_knn(x: np.ndarray, k: int) -> np.ndarray:
    norms = np.sqrt((x**2).sum(0))
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return keep_top_k_per_row(unit.T @ unit, k)


def brute_force_bm25_knn(x: np.ndarray, k: int, k1: float, b: float) -> np.ndarray:
    """BM25 over each item's column (items are the documents, users the terms), then the cosine's dot products."""
    n_items = x.shape[1]
    idf = np.log(n_items) - np.log1p((x > 0).sum(1))  # per user: how many items they liked
    length = x.sum(0)
    norm = (1 - b) + b * length / length.mean()
    weighted = x * (k1 + 1) / (k1 * norm[None, :] + x) * idf[:, None]
    return keep_top_k_per_row(weighted.T @ weighted, k)


@pytest.mark.parametrize("k", [2, 5])
def test_itemknn_cosine_matches_brute_force(k: int) -> None:
    data, x = random_fold()
    model = ItemKNNRecommender(ItemKNNConfig(similarity=["cosine"], neighbours=[k], n_trials=1)).fit(data)
    assert_top_k_of(model.weights, brute_force_cosine_knn(x, x.shape[1]), k)
    assert np.allclose(model.score(torch.tensor([1, 3])).numpy(), x[[1, 3]] @ model.weights, atol=1e-5)


def test_itemknn_bm25_matches_brute_force() -> None:
    data, x = random_fold(seed=1)
    cfg = ItemKNNConfig(similarity=["bm25"], neighbours=[3], bm25_k1=[1.5], bm25_b=[0.5], n_trials=1)
    model = ItemKNNRecommender(cfg).fit(data)
    assert_top_k_of(model.weights, brute_force_bm25_knn(x, x.shape[1], 1.5, 0.5), 3)
    assert model.training_log.hyperparameters == {"similarity": "bm25", "neighbours": 3, "bm25_k1": 1.5, "bm25_b": 0.5}


def brute_force_rp3beta(x: np.ndarray, alpha: float, beta: float, k: int) -> np.ndarray:
    """The three-step walk item -> user -> item summed path by path, then the popularity penalty and top-k."""
    n_users, n_items = x.shape
    user_degree, item_degree = x.sum(1), x.sum(0)
    w = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            if i == j or item_degree[j] == 0:
                continue
            for u in range(n_users):
                if x[u, i] and x[u, j]:
                    w[i, j] += (1 / item_degree[i]) ** alpha * (1 / user_degree[u]) ** alpha
            w[i, j] /= item_degree[j] ** beta
    return keep_top_k_per_row(w, k)


def test_rp3beta_by_hand_on_two_items() -> None:
    # users: 0 likes items 0 and 1, user 1 likes item 1. deg(u0)=2, deg(u1)=1, deg(i0)=1, deg(i1)=2.
    x = sp.csr_matrix(np.array([[1.0, 1.0], [0.0, 1.0]]))
    w = rp3beta_weights(x, alpha=1.0, beta=0.5, neighbours=2)
    # 0 -> 1: from item 0 to user 0 (prob 1), to item 1 (prob 1/2), penalised by deg(1)^-0.5.
    # 1 -> 0: from item 1 to user 0 (prob 1/2), to item 0 (prob 1/2), penalised by deg(0)^-0.5 = 1.
    assert np.allclose(w, [[0.0, 0.5 / np.sqrt(2)], [0.25, 0.0]])


@pytest.mark.parametrize(("alpha", "beta", "k"), [(1.0, 0.0, 9), (0.7, 0.4, 3), (1.3, 1.0, 1)])
def test_rp3beta_matches_the_path_by_path_walk(alpha: float, beta: float, k: int) -> None:
    data, x = random_fold(seed=2)
    model = RP3betaRecommender(RP3betaConfig(alpha=[alpha], beta=[beta], neighbours=[k], n_trials=1)).fit(data)
    assert_top_k_of(model.weights, brute_force_rp3beta(x, alpha, beta, x.shape[1]), k)
    assert np.allclose(model.score(torch.arange(data.n_users)).numpy(), x @ model.weights, atol=1e-5)


def test_keep_top_k_per_row() -> None:
    w = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    assert np.array_equal(keep_top_k_per_row(w, 2), [[3.0, 0.0, 2.0], [0.0, 5.0, 4.0]])
    assert np.array_equal(keep_top_k_per_row(w, 9), w)
