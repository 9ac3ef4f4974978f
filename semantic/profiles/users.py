"""User profiles (paper section 2.1.2), per fold, from that fold's training ratings only.

A user is described by up to `n_liked` highest-rated (>= 4) and `n_disliked` lowest-rated (<= 2) training movies;
ties go to the most recent rating, then the lower item_idx. The LLM backend feeds them in turns of `batch_size`
(liked first, then disliked); each turn's prompt carries the profile written so far and asks for a refined one, so
a turn's request depends only on its movies and the previous profile, and the gateway's cache memoises it.
`Fold.test` is never read. Whether the validation slice counts as training is `include_validation` (default no).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from data.splits import Fold
from e2ep.errors import ConfigError
from e2ep.sampling import user_sample
from semantic.profiles.common import ChatGateway, Messages, ProfileResult, ask_many, backend_for, finish_frame
from semantic.profiles.config import ProfilesConfig
from semantic.profiles.items import normalise_items
from semantic.profiles.schema import render_profile
from semantic.profiles.templates import display_title

STAGE = "user_profiles"

USER_SYSTEM_PROMPT = """You build structured movie-taste profiles of recommender-system users from movies they rated
(1-5 stars). Answer with Markdown only, in exactly this schema:

# <short label summarising this viewer's taste>

## Overview
<2-3 sentences: the core of what this viewer enjoys and avoids>

## Attributes
- Genre: <comma-separated preferred genres>
- Tags: <comma-separated preferred narrative elements ("time travel", "heist") and character types ("anti-hero",
  "strong female protagonist")>

## Description
<one paragraph: themes, tone, style and characters this viewer is drawn to>

## Dislikes
<comma-separated genres, themes and elements this viewer avoids>

When a profile so far is given, refine it with the new movies: keep what still holds, add what is new, and resolve
contradictions in favour of the overall pattern."""


def training_ratings(fold: Fold, cfg: ProfilesConfig) -> pl.DataFrame:
    train = fold.train
    if not cfg.include_validation and "is_validation" in train.columns:
        train = train.filter(~pl.col("is_validation"))
    if "timestamp" not in train.columns:
        train = train.with_columns(timestamp=pl.lit(None, pl.Int64))
    return train.select("user_idx", "item_idx", "rating", "timestamp")


def select_rated(train: pl.DataFrame, cfg: ProfilesConfig) -> pl.DataFrame:
    """user_idx, item_idx, rating, kind (`liked`/`disliked`), in the order they are shown: per user, liked by rating
    desc, then disliked by rating asc; ties by timestamp desc (missing last), then item_idx."""
    parts = []
    for kind, keep, low_first, n in (
        ("liked", pl.col("rating") >= cfg.liked_min_rating, False, cfg.n_liked),
        ("disliked", pl.col("rating") <= cfg.disliked_max_rating, True, cfg.n_disliked),
    ):
        chosen = (
            train.filter(keep)
            .sort(
                ["user_idx", "rating", "timestamp", "item_idx"],
                descending=[False, not low_first, True, False],
                nulls_last=True,
            )
            .group_by("user_idx", maintain_order=True)
            .head(n)
            .with_columns(kind=pl.lit(kind), _kind_order=pl.lit(0 if kind == "liked" else 1))
        )
        parts.append(chosen.with_row_index("_pos"))
    return pl.concat(parts).sort("user_idx", "_kind_order", "_pos").select("user_idx", "item_idx", "rating", "kind")


def _movie_line(movie: dict[str, Any]) -> str:
    title = display_title(movie.get("title"))
    year = f" ({movie['year']})" if movie.get("year") else ""
    rating = f"{movie['rating']:g}"
    line = f"- {title}{year}: rated {rating}/5 ({movie['kind']})"
    if movie.get("genres"):
        line += f". Genres: {', '.join(movie['genres'])}"
    if movie.get("keywords"):
        line += f". Keywords: {', '.join(movie['keywords'][:8])}"
    overview = " ".join((movie.get("overview") or "").split())
    if overview:
        line += f". Plot: {overview[:300]}"
    return line


def user_prompt(previous: str | None, movies: list[dict[str, Any]]) -> Messages:
    """One refinement turn: the profile so far (None on the first turn) and the next batch of rated movies."""
    listing = "\n".join(_movie_line(m) for m in movies)
    if previous is None:
        content = f"No profile exists yet. Write one from these movies the viewer rated:\n\n{listing}"
    else:
        content = (
            f"Profile so far:\n\n{previous.strip()}\n\n"
            f"Refine it with these further movies the viewer rated:\n\n{listing}"
        )
    return [{"role": "system", "content": USER_SYSTEM_PROMPT}, {"role": "user", "content": content}]


def _top(counter: Counter[str], n: int) -> list[str]:
    return [k for k, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def template_user_profile(user_idx: int, movies: list[dict[str, Any]], n_ratings: int) -> tuple[str, str]:
    """(profile, source): deterministic, from rating statistics; `minimal` when no movie was liked or disliked."""
    name = f"User {user_idx}"
    liked = [m for m in movies if m["kind"] == "liked"]
    disliked = [m for m in movies if m["kind"] == "disliked"]
    if not liked and not disliked:
        return (
            render_profile(
                name,
                f"No strongly rated movies in training ({n_ratings} rating(s), none >= 4 or <= 2); "
                "preferences unknown.",
                [],
                [],
                "Not enough rating information to describe this viewer.",
                "Unknown.",
            ),
            "minimal",
        )
    liked_genres = _top(Counter(g for m in liked for g in m.get("genres") or []), 5)
    disliked_genres = _top(Counter(g for m in disliked for g in m.get("genres") or []), 5)
    tags = _top(Counter(k for m in liked for k in m.get("keywords") or []), 8)
    titles = [display_title(m.get("title")) for m in liked]
    low_titles = [display_title(m.get("title")) for m in disliked]
    overview = f"A viewer with {len(liked)} highly rated (4-5) and {len(disliked)} low-rated (1-2) movies shown here"
    overview += f", favouring {', '.join(liked_genres)} films." if liked_genres else "."
    description = f"Favourite movies: {', '.join(titles)}." if titles else "No highly rated movies."
    dislikes = (
        f"Genres: {', '.join(disliked_genres) or 'unknown'}. Movies rated low: {', '.join(low_titles)}."
        if disliked
        else "No movie rated 2 or lower."
    )
    return render_profile(name, overview, liked_genres, tags, description, dislikes), "template"


def user_profiles(
    fold: Fold,
    items: pl.DataFrame,
    cfg: ProfilesConfig,
    *,
    n_users: int | None = None,
    gateway: ChatGateway | None = None,
    id_map: pl.DataFrame | None = None,
) -> ProfileResult:
    """Profiles of every user in the fold's training part (and of every index below `n_users`, if given).

    items: item metadata (see `normalise_items`). `precomputed` needs `id_map` (user_idx, user_id), e.g.
    `Dataset.users`, and is refused for any fold but `cfg.precomputed_user_fold`.
    """
    backend = backend_for(cfg, gateway)
    if backend == "precomputed" and fold.number != cfg.precomputed_user_fold:
        raise ConfigError(
            f"the precomputed user profiles were built from fold {cfg.precomputed_user_fold}'s training ratings; "
            f"using them for fold {fold.number} would leak its test ratings. Use backend 'template' or 'llm'"
        )
    train = training_ratings(fold, cfg)
    movies = rated_movies(fold, items, cfg)
    n_ratings = dict(train.group_by("user_idx").len().iter_rows())
    ordered = sorted(set(fold.train["user_idx"].to_list()) | set(range(n_users or 0)))
    templates = {u: template_user_profile(u, movies.get(u, []), n_ratings.get(u, 0)) for u in ordered}
    extra: dict[str, int] = {}
    if backend == "template":
        result = templates
    elif backend == "llm":
        if gateway is None:
            raise ConfigError("profiles.backend 'llm' needs an LLM gateway")
        chosen = llm_users(ordered, n_users, cfg)
        result, extra = _llm_profiles(chosen, movies, templates, cfg, gateway)
        for u in set(ordered) - set(chosen):  # outside the max_users sample: template, labelled as such
            profile, source = templates[u]
            result[u] = (profile, "template_unsampled" if source == "template" else source)
    else:
        from semantic.profiles.precomputed import load_precomputed_users

        result, extra = load_precomputed_users(cfg, id_map, templates)
    frame = pl.DataFrame(
        {
            "user_idx": ordered,
            "profile": [result[u][0] for u in ordered],
            "profile_source": [result[u][1] for u in ordered],
        },
        schema={"user_idx": pl.Int32, "profile": pl.String, "profile_source": pl.String},
    )
    return finish_frame(frame, cfg, extra)


def llm_users(ordered: list[int], n_users: int | None, cfg: ProfilesConfig) -> list[int]:
    """The users whose profiles the LLM writes: all, or those of the seeded `cfg.max_users` sample."""
    sample = user_sample(max(n_users or 0, max(ordered, default=-1) + 1), cfg.max_users, cfg.sample_seed)
    return ordered if sample is None else sorted(set(ordered) & set(sample))


def rated_movies(fold: Fold, items: pl.DataFrame, cfg: ProfilesConfig) -> dict[int, list[dict[str, Any]]]:
    """Per user, the liked then disliked training movies that describe them, with their metadata, in turn order."""
    meta = normalise_items(items).select("item_idx", "title", "year", "genres", "keywords", "overview")
    chosen = select_rated(training_ratings(fold, cfg), cfg).join(meta, on="item_idx", how="left")
    movies: dict[int, list[dict[str, Any]]] = {}
    for row in chosen.iter_rows(named=True):
        movies.setdefault(row["user_idx"], []).append(row)
    return movies


def turn_batches(
    users: list[int], movies: dict[int, list[dict[str, Any]]], size: int
) -> dict[int, list[list[dict[str, Any]]]]:
    """Each user's movies in turns of `size` (one LLM request per turn); users with no movie make no request."""
    return {u: [movies[u][i : i + size] for i in range(0, len(movies[u]), size)] for u in users if u in movies}


def _llm_profiles(
    users: list[int],
    movies: dict[int, list[dict[str, Any]]],
    templates: dict[int, tuple[str, str]],
    cfg: ProfilesConfig,
    gateway: ChatGateway,
) -> tuple[dict[int, tuple[str, str]], dict[str, int]]:
    """Turn t of every user at once (one `complete_many` per turn); a user whose turn fails gets the template."""
    batches = turn_batches(users, movies, cfg.batch_size)
    current: dict[int, str | None] = {u: None for u in batches}
    failed: set[int] = set()
    turns = 0
    for turn in range(max((len(b) for b in batches.values()), default=0)):
        active = [u for u, b in batches.items() if turn < len(b) and u not in failed]
        if not active:
            break
        answers = ask_many(gateway, [user_prompt(current[u], batches[u][turn]) for u in active], STAGE, cfg)
        turns += len(active)
        for u, answer in zip(active, answers, strict=True):
            if answer is None:
                failed.add(u)
            else:
                current[u] = answer
    result: dict[int, tuple[str, str]] = {}
    for u in users:
        text = current.get(u)
        if u in batches and u not in failed and text is not None:
            result[u] = (text, "llm")
        elif u in batches:
            result[u] = (templates[u][0], "template_fallback")
        else:
            result[u] = templates[u]  # nothing liked or disliked: the minimal profile, no LLM call
    return result, {"llm_turns": turns}
