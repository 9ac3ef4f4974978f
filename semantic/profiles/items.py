"""Item profiles (paper section 2.1.1): an LLM, or a deterministic template, turns movie metadata into the schema."""

from __future__ import annotations

from typing import Any

import polars as pl

from e2ep.errors import ConfigError, DataError
from semantic.profiles.common import ChatGateway, Messages, ProfileResult, ask_many, backend_for, finish_frame
from semantic.profiles.config import ProfilesConfig
from semantic.profiles.precomputed import precomputed_item_profiles
from semantic.profiles.templates import clean_text, display_title, template_item_profile

STAGE = "item_profiles"
_LIST_COLUMNS = ("genres", "keywords", "cast")
_TEXT_COLUMNS = ("title", "overview", "director")

ITEM_SYSTEM_PROMPT = """You write structured movie profiles for a recommender system.
Answer with Markdown only, in exactly this schema:

# <Movie title>

## Overview
<2-3 sentences: the core narrative or thematic essence>

## Attributes
- Genre: <comma-separated genres>
- Tags: <comma-separated descriptive tags: narrative elements such as "time travel", "heist", "coming of age", and
  character descriptors such as "anti-hero", "strong female protagonist", "ensemble cast">

## Description
<one paragraph: expanded narrative, tone, style and character-focused insights>

## Dislikes
<comma-separated attributes of the kind of movie-goer or content this film will NOT appeal to>

Use only what the metadata supports or what is widely known about the film; do not invent plot details."""


def normalise_items(items: pl.DataFrame) -> pl.DataFrame:
    """Item metadata in the shape `semantic.metadata.enrich_items` produces (item_idx, title, year, genres, overview,
    keywords, director, cast; list columns as list[str]), from that or from `Dataset.items` ("A|B" genres)."""
    if "item_idx" not in items.columns:
        raise DataError("item metadata needs an item_idx column")
    exprs: list[pl.Expr] = []
    for col in _LIST_COLUMNS:
        if col not in items.columns:
            exprs.append(pl.lit([], pl.List(pl.String)).alias(col))
        elif items.schema[col] == pl.String:
            exprs.append(pl.col(col).str.split("|").list.eval(pl.element().str.strip_chars()).alias(col))
        else:
            exprs.append(pl.col(col).cast(pl.List(pl.String)))
    for col in _TEXT_COLUMNS:
        exprs.append(pl.col(col).cast(pl.String) if col in items.columns else pl.lit(None, pl.String).alias(col))
    exprs.append(pl.col("year").cast(pl.Int32) if "year" in items.columns else pl.lit(None, pl.Int32).alias("year"))
    out = items.with_columns(exprs).with_columns(
        pl.col(c).fill_null([]).list.eval(pl.element().filter(pl.element().str.len_chars() > 0)) for c in _LIST_COLUMNS
    )
    if out["item_idx"].is_duplicated().any():
        raise DataError("item metadata lists an item_idx more than once")
    return out.sort("item_idx")


def item_prompt(row: dict[str, Any]) -> Messages:
    """The chat request for one movie (a dict with the normalised metadata columns)."""
    lines = [f"Title: {display_title(row.get('title'))}"]
    if row.get("year"):
        lines.append(f"Year: {row['year']}")
    for label, key in (("Genres", "genres"), ("Keywords", "keywords"), ("Cast", "cast")):
        if row.get(key):
            lines.append(f"{label}: {', '.join(row[key][:12])}")
    if row.get("director"):
        lines.append(f"Director: {clean_text(row['director'])}")
    lines.append(f"Overview: {clean_text(row.get('overview')) or 'not available'}")
    return [
        {"role": "system", "content": ITEM_SYSTEM_PROMPT},
        {"role": "user", "content": "Write the profile of this movie.\n\n" + "\n".join(lines)},
    ]


def item_profiles(
    items: pl.DataFrame, cfg: ProfilesConfig, *, gateway: ChatGateway | None = None, id_map: pl.DataFrame | None = None
) -> ProfileResult:
    """Profiles of every item in `items`: frame item_idx, profile, text, profile_source; counts by source.

    `precomputed` needs MovieLens ids: an `item_id` column in `items` or `id_map` (item_idx, item_id), e.g.
    `Dataset.items`. LLM answers the gateway could not validate fall back to the template, counted as such.
    """
    meta = normalise_items(items)
    rows = meta.to_dicts()
    backend = backend_for(cfg, gateway)
    if backend == "template":
        profiles = [template_item_profile(r) for r in rows]
        sources = ["template"] * len(rows)
    elif backend == "llm":
        if gateway is None:
            raise ConfigError("profiles.backend 'llm' needs an LLM gateway")
        answers = ask_many(gateway, [item_prompt(r) for r in rows], STAGE, cfg)
        profiles, sources = [], []
        for row, answer in zip(rows, answers, strict=True):
            ok = answer is not None
            profiles.append(answer if ok else template_item_profile(row))
            sources.append("llm" if ok else "template_fallback")
    else:
        return precomputed_item_profiles(meta, cfg, id_map=id_map)
    frame = pl.DataFrame(
        {"item_idx": meta["item_idx"], "profile": profiles, "profile_source": sources},
        schema={"item_idx": pl.Int32, "profile": pl.String, "profile_source": pl.String},
    )
    return finish_frame(frame, cfg)
