"""What the judges know about users and items: profiles, embeddings, recent likes (all from the fold's training side).

Built once per (fold, strategy) from the semantic stage's outputs; `UserContext` is one user's candidate pool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np
import polars as pl

from e2ep.errors import DataError
from semantic.profiles.config import EmbeddingConfig
from semantic.profiles.schema import NAME, parse_profile

_PEOPLE = re.compile(r"(?:Directed by|Starring)\s+([^.]+)\.")
_LIST_LINE = re.compile(r"^\s*[-*+]?\s*\**\s*(Genres?|Tags?)\s*\**\s*:\s*\**\s*(.*)$", re.I | re.M)


@dataclass(frozen=True)
class UserContext:
    """One user's pool: candidates in the base model's order with its scores."""

    user_idx: int
    candidates: list[int]
    base_scores: list[float]

    @cached_property
    def base_rank(self) -> dict[int, int]:
        """Position of each candidate in the base order (0 = best)."""
        return {item: i for i, item in enumerate(self.candidates)}


@dataclass
class RerankInputs:
    """Profiles (Markdown, by index), unit-norm profile embeddings (row = node index), the Dislikes sections'
    embeddings (None: not used), and each user's liked training items, most recent first."""

    user_profiles: dict[int, str]
    item_profiles: dict[int, str]
    user_vectors: np.ndarray
    item_vectors: np.ndarray
    liked: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    user_dislike_vectors: np.ndarray | None = None
    item_dislike_vectors: np.ndarray | None = None

    _people: dict[int, dict[str, int]] = field(default_factory=dict, repr=False)

    def title(self, item: int) -> str:
        return profile_sections(self.item_profiles.get(item, "")).get(NAME) or f"Movie {item}"

    def liked_people(self, user: int) -> dict[str, int]:
        """Cast and crew of the user's liked movies (lower-cased) -> the most recent liked movie with them."""
        if user not in self._people:
            index: dict[str, int] = {}
            for item, _ in self.liked.get(user, []):
                for person in profile_people(self.item_profiles.get(item, "")):
                    index.setdefault(person.lower(), item)
            self._people[user] = index
        return self._people[user]


@lru_cache(maxsize=65536)
def profile_sections(text: str) -> dict[str, str]:
    return parse_profile(text) if text else {}


@lru_cache(maxsize=65536)
def attribute_list(profile: str, key: str) -> tuple[str, ...]:
    """The comma-separated values of `- Genre:` (key `genre`) or `- Tags:` (key `tag`) in Attributes."""
    body = profile_sections(profile).get("Attributes", "")
    values: list[str] = []
    for name, rest in _LIST_LINE.findall(body):
        if name.lower().rstrip("s") == key:
            values += [v.strip(" .*") for v in rest.split(",") if v.strip(" .*")]
    return tuple(v for v in values if v.lower() not in ("unknown", "none"))


@lru_cache(maxsize=65536)
def profile_people(profile: str) -> tuple[str, ...]:
    """Names after "Directed by" / "Starring" in the Description (as the template item profiles write them)."""
    text = profile_sections(profile).get("Description", "")
    return tuple(p.strip() for group in _PEOPLE.findall(text) for p in group.split(",") if p.strip())


def liked_items(train: pl.DataFrame, min_rating: float, limit: int = 50) -> dict[int, list[tuple[int, float]]]:
    """Per user, up to `limit` training items rated >= `min_rating`, most recent first (ties: higher rating)."""
    frame = train.filter(pl.col("rating") >= min_rating)
    if "timestamp" not in frame.columns:
        frame = frame.with_columns(timestamp=pl.lit(0, pl.Int64))
    frame = (
        frame.sort(["user_idx", "timestamp", "rating", "item_idx"], descending=[False, True, True, False])
        .group_by("user_idx", maintain_order=True)
        .head(limit)
    )
    out: dict[int, list[tuple[int, float]]] = {}
    for user, item, rating in frame.select("user_idx", "item_idx", "rating").iter_rows():
        out.setdefault(int(user), []).append((int(item), float(rating)))
    return out


def dislike_vectors(
    profiles: pl.DataFrame, id_col: str, n: int, cfg: EmbeddingConfig | None, rows: set[int] | None = None
) -> np.ndarray:
    """`[n, dim]` embeddings of each profile's Dislikes section (zero where empty or not in `rows`)."""
    from semantic.embed import embed_texts

    ids, texts = [], []
    for idx, profile in profiles.select(id_col, "profile").iter_rows():
        if rows is not None and idx not in rows:
            continue
        text = profile_sections(profile or "").get("Dislikes", "").strip()
        if text:
            ids.append(int(idx))
            texts.append(f"Dislikes: {text}")
    vectors = embed_texts(texts, cfg) if texts else np.zeros((0, 1), np.float32)
    out = np.zeros((n, vectors.shape[1] if texts else 1), np.float32)
    if texts:
        out[ids] = vectors
    return out


def build_inputs(
    item_profiles: pl.DataFrame,
    user_profiles: pl.DataFrame,
    item_vectors: np.ndarray,
    user_vectors: np.ndarray,
    train: pl.DataFrame,
    min_rating: float,
    embedding: EmbeddingConfig | None = None,
    dislikes: bool = True,
    items_used: set[int] | None = None,
    users_used: set[int] | None = None,
) -> RerankInputs:
    """Everything a judge reads, from the semantic stage's frames and matrices and the fold's training ratings.

    `dislikes`: also embed the Dislikes sections (for the semantic judge), only of the given items and users."""
    for name, frame, key in (("item", item_profiles, "item_idx"), ("user", user_profiles, "user_idx")):
        if key not in frame.columns or "profile" not in frame.columns:
            raise DataError(f"{name} profiles need columns {key}, profile; got {frame.columns}")
    if item_vectors.ndim != 2 or user_vectors.ndim != 2 or item_vectors.shape[1] != user_vectors.shape[1]:
        raise DataError(
            f"item and user embeddings must be [n, d] with one d; got {item_vectors.shape}, {user_vectors.shape}"
        )
    inputs = RerankInputs(
        user_profiles=dict(user_profiles.select("user_idx", "profile").iter_rows()),
        item_profiles=dict(item_profiles.select("item_idx", "profile").iter_rows()),
        user_vectors=np.asarray(user_vectors, np.float32),
        item_vectors=np.asarray(item_vectors, np.float32),
        liked=liked_items(train, min_rating),
    )
    if dislikes:
        inputs.item_dislike_vectors = dislike_vectors(
            item_profiles, "item_idx", len(item_vectors), embedding, items_used
        )
        inputs.user_dislike_vectors = dislike_vectors(
            user_profiles, "user_idx", len(user_vectors), embedding, users_used
        )
    return inputs
