"""Small reranking inputs: random unit profile embeddings, schema profiles, a base model's lists."""

from __future__ import annotations

import numpy as np
import polars as pl

from rerank.inputs import RerankInputs
from semantic.profiles.schema import render_profile

GENRES = ["Drama", "Comedy", "Horror", "Sci-Fi"]


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def item_profile(i: int, extra: str = "") -> str:
    genres = [GENRES[i % 4], GENRES[(i + 1) % 4]]
    return render_profile(
        f"Movie {i}",
        f"Story of movie {i}. {extra}".strip(),
        genres,
        [f"tag{i % 5}"],
        f"Directed by Director {i % 3}. Starring Actor {i % 7}.",
        f"Viewers who dislike {genres[0]} films.",
    )


def user_profile(u: int) -> str:
    return render_profile(
        f"User {u}",
        "Likes things.",
        [GENRES[u % 4], "Drama"],
        ["tag1", "tag2"],
        "Favourite movies: a few.",
        f"Genres: {GENRES[(u + 2) % 4]}.",
    )


def make_inputs(
    n_users: int = 4, n_items: int = 30, dim: int = 8, seed: int = 0, item_text: dict[int, str] | None = None
) -> RerankInputs:
    rng = np.random.default_rng(seed)
    liked = {u: [(int(i), 5.0) for i in rng.choice(n_items, 3, replace=False)] for u in range(n_users)}
    return RerankInputs(
        user_profiles={u: user_profile(u) for u in range(n_users)},
        item_profiles={i: item_profile(i, (item_text or {}).get(i, "")) for i in range(n_items)},
        user_vectors=unit_rows(rng, n_users, dim),
        item_vectors=unit_rows(rng, n_items, dim),
        liked=liked,
        user_dislike_vectors=unit_rows(rng, n_users, dim),
        item_dislike_vectors=unit_rows(rng, n_items, dim),
    )


def base_recs(n_users: int = 4, n_items: int = 30, length: int = 25, seed: int = 1) -> pl.DataFrame:
    """Each user's list: `length` distinct items with decreasing scores."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, length, replace=False)
        scores = np.sort(rng.normal(size=length))[::-1]
        rows += [(u, int(i), r + 1, float(s)) for r, (i, s) in enumerate(zip(items, scores, strict=True))]
    return pl.DataFrame(
        rows, schema={"user_idx": pl.Int32, "item_idx": pl.Int32, "rank": pl.Int32, "score": pl.Float32}, orient="row"
    )
