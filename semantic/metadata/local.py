"""Item metadata from a local CSV keyed by item id (e.g. the derived `ml-100k_items_tmdb.csv.gz`)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import polars as pl

from e2ep.errors import DataError

# Output column -> accepted input columns, first present wins (overview falls back to the OMDb plot per row).
KEY_COLUMNS = ("item_id", "movie_id", "movieId")
_ALIASES = {
    "tmdb_id": ("tmdb_id", "tmdbId"),
    "title": ("tmdb_title", "title"),
    "overview": ("overview", "omdb_plot", "plot"),
    "genres": ("tmdb_genres", "genres"),
    "keywords": ("keywords",),
    "director": ("director", "directors"),
    "cast": ("actors", "cast"),
}
_LISTS = ("genres", "keywords", "cast")
_SPLIT_PIPE = re.compile(r"\s*\|\s*")
_SPLIT_COMMA = re.compile(r"\s*[,;]\s*")


def parse_list(value: str | None) -> list[str]:
    """`A|B`, `A, B`, `["A", "B"]`, `[{"id": 1, "name": "A"}]` or `['A', 'B']` -> ["A", "B"]; blanks dropped."""
    if value is None:
        return []
    text = value.strip()
    if not text or text.casefold() in {"nan", "none", "null", "n/a", "[]"}:
        return []
    if text.startswith("["):
        parsed = _literal(text)
        if parsed is not None:
            names = [p.get("name") if isinstance(p, dict) else p for p in parsed]
            return [str(n).strip() for n in names if n is not None and str(n).strip()]
    parts = _SPLIT_PIPE.split(text) if "|" in text else _SPLIT_COMMA.split(text)
    return [p for p in (part.strip() for part in parts) if p]


def _literal(text: str) -> list | None:
    for parse in (json.loads, ast.literal_eval):
        try:
            parsed = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(parsed, list):
            return parsed
    return None


def read_local_metadata(path: str | Path) -> pl.DataFrame:
    """`key` (String) plus tmdb_id Int64, title, overview, genres/keywords/cast list[str], director; one row per key."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise DataError(f"metadata file {path} does not exist")
    try:
        raw = pl.read_csv(path, infer_schema_length=0, encoding="utf8-lossy")
    except Exception as exc:  # polars raises several types for unreadable, binary or ragged files
        raise DataError(f"{name}: not a readable CSV file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    key = next((c for c in KEY_COLUMNS if c in raw.columns), None)
    if key is None:
        raise DataError(f"{name}: needs an item id column ({' or '.join(KEY_COLUMNS)}); found {raw.columns[:8]}")
    present = {out: [c for c in cols if c in raw.columns] for out, cols in _ALIASES.items()}
    if not any(cols for out, cols in present.items() if out != "title"):
        known = sorted({c for cols in _ALIASES.values() for c in cols})
        raise DataError(f"{name}: no metadata columns; expected some of {known}")
    blank = lambda c: pl.col(c).str.strip_chars().replace("", None)  # noqa: E731
    frame = raw.select(
        pl.col(key).str.strip_chars().alias("key"),
        *(
            (pl.coalesce(blank(c) for c in cols) if cols else pl.lit(None, pl.String)).alias(out)
            for out, cols in present.items()
        ),
    ).filter(pl.col("key").is_not_null() & (pl.col("key") != ""))
    dupes = frame.filter(pl.col("key").is_duplicated())["key"].unique().sort().to_list()
    if dupes:
        raise DataError(f"{name}: item ids listed more than once, e.g. {dupes[:5]}")
    tmdb = frame["tmdb_id"].str.replace(r"\.0$", "").cast(pl.Int64, strict=False)
    bad = frame.filter(tmdb.is_null() & frame["tmdb_id"].is_not_null())["tmdb_id"].head(3).to_list()
    if bad:
        raise DataError(f"{name}: tmdb_id must be an integer, found {bad}")
    return frame.with_columns(
        tmdb_id=tmdb,
        director=pl.col("director").map_elements(_join_names, return_dtype=pl.String, skip_nulls=True),
        **{c: pl.col(c).map_elements(parse_list, return_dtype=pl.List(pl.String)).fill_null([]) for c in _LISTS},
    )


def _join_names(value: str) -> str | None:
    """A director list in any of the list formats becomes "A, B"; a plain name stays as it is."""
    return ", ".join(parse_list(value)) or None if value.startswith("[") else value
