"""The paper authors' published ML-100K profiles (gpt-4o-mini): items by MovieLens movie id, users by user id.

Their user profiles were built from `u1.base`, so they are valid for fold 1 of the official split only (the caller
checks the fold). Ids without a usable profile (absent, or empty) get the template profile and are counted.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from e2ep.errors import ConfigError, DataError
from semantic.profiles.common import ProfileResult, finish_frame
from semantic.profiles.config import ProfilesConfig
from semantic.profiles.schema import missing_sections
from semantic.profiles.templates import template_item_profile


def read_profiles(path: str | Path, id_col: str, text_col: str) -> dict[int, str]:
    """{id: profile} from one of the authors' CSV files; rows with an empty profile are left out."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"precomputed profile file {path} not found")
    frame = pl.read_csv(path, infer_schema_length=0, columns=[id_col, text_col])
    if frame[id_col].null_count():
        raise DataError(f"{path.name}: {frame[id_col].null_count()} row(s) without {id_col}")
    frame = frame.with_columns(pl.col(id_col).cast(pl.Int64, strict=False)).filter(
        pl.col(text_col).str.strip_chars().str.len_chars() > 0
    )
    if frame[id_col].is_duplicated().any():
        raise DataError(f"{path.name}: duplicate {id_col} values")
    return dict(zip(frame[id_col].to_list(), frame[text_col].to_list(), strict=True))


def _ids(id_map: pl.DataFrame | None, fallback: pl.DataFrame, kind: str) -> dict[int, int]:
    """{<kind>_idx: MovieLens id} from id_map, else from the frame's own `<kind>_id` column."""
    idx, key = f"{kind}_idx", f"{kind}_id"
    source = id_map if id_map is not None else fallback
    if key not in source.columns or idx not in source.columns:
        raise ConfigError(
            f"precomputed {kind} profiles are keyed by MovieLens {key}: pass id_map with {idx} and {key} "
            f"(e.g. Dataset.{kind}s)"
        )
    return dict(zip(source[idx].to_list(), source[key].cast(pl.Int64).to_list(), strict=True))


def _counts(found: int, missing: int, incomplete: int) -> dict[str, int]:
    return {"precomputed_found": found, "precomputed_missing": missing, "precomputed_incomplete": incomplete}


def precomputed_item_profiles(meta: pl.DataFrame, cfg: ProfilesConfig, *, id_map: pl.DataFrame | None) -> ProfileResult:
    """meta: normalised item metadata (every item gets a row). Missing items: `template_fallback`."""
    if not cfg.precomputed_items_path:
        raise ConfigError("profiles.backend 'precomputed' needs precomputed_items_path")
    published = read_profiles(cfg.precomputed_items_path, "movie_id", "movie_info")
    ids = _ids(id_map, meta, "item")
    profiles, sources, incomplete = [], [], 0
    for row in meta.iter_rows(named=True):
        text = published.get(ids.get(row["item_idx"], -1))
        if text is None:
            profiles.append(template_item_profile(row))
            sources.append("template_fallback")
        else:
            incomplete += bool(missing_sections(text))
            profiles.append(text.strip())
            sources.append("precomputed")
    frame = pl.DataFrame(
        {"item_idx": meta["item_idx"], "profile": profiles, "profile_source": sources},
        schema={"item_idx": pl.Int32, "profile": pl.String, "profile_source": pl.String},
    )
    found = sources.count("precomputed")
    return finish_frame(frame, cfg, _counts(found, len(sources) - found, incomplete))


def load_precomputed_users(
    cfg: ProfilesConfig, id_map: pl.DataFrame | None, templates: dict[int, tuple[str, str]]
) -> tuple[dict[int, tuple[str, str]], dict[str, int]]:
    """{user_idx: (profile, source)} for every user in `templates`; missing ones keep the template profile."""
    if not cfg.precomputed_users_path:
        raise ConfigError("profiles.backend 'precomputed' needs precomputed_users_path")
    if id_map is None:
        raise ConfigError("precomputed user profiles are keyed by user_id: pass id_map (user_idx, user_id)")
    published = read_profiles(cfg.precomputed_users_path, "user_id", "user_profile")
    ids = _ids(id_map, id_map, "user")
    result: dict[int, tuple[str, str]] = {}
    incomplete = 0
    for user, template in templates.items():
        text = published.get(ids.get(user, -1))
        if text is None:
            result[user] = (template[0], "template_fallback" if template[1] == "template" else template[1])
        else:
            incomplete += bool(missing_sections(text))
            result[user] = (text.strip(), "precomputed")
    found = sum(1 for _, s in result.values() if s == "precomputed")
    return result, _counts(found, len(result) - found, incomplete)
