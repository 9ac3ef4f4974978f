"""The generic `csv` dataset: any ratings file with a header naming user, item and rating columns (and optionally a
timestamp), plus optional item metadata, so data other than the official MovieLens archives (e.g. MovieLens' own
current `ratings.csv` / `movies.csv`, or the seed paper's split) can be used.

Column names are matched case-insensitively, ignoring `_` and spaces (`userId`, `user_id`, `user`; `movieId`,
`itemId`, `item_id`, `movie_id`, `item`; `rating`, `score`; `timestamp`). The separator is sniffed from the header
line (comma, tab, `::`, `|` or `;`) unless one is given.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from data.files import read_bytes
from data.parsing import (
    Kind,
    RawTables,
    TextSource,
    check_rating_scale,
    check_unique,
    drop_repeated_rows,
    integer_ids_if_possible,
    read_table,
    year_from_title,
)
from e2ep.errors import DataError

SEPARATORS = {",": "comma", "\t": "tab", "::": "'::'", "|": "'|'", ";": "';'"}
"""Separators the `csv` dataset sniffs or accepts, with the name errors use."""
DEFAULT_SCALE = (0.5, 5.0)
"""Ratings a CSV file may hold unless `dataset.rating_scale` says otherwise (MovieLens' half-star scale)."""

# Normalised header name (lower case, no `_` or spaces) -> the column's role.
_RATING_ROLES = {
    "userid": "user_id",
    "user": "user_id",
    "movieid": "item_id",
    "itemid": "item_id",
    "item": "item_id",
    "movie": "item_id",
    "rating": "rating",
    "score": "rating",
    "timestamp": "timestamp",
}
_ITEM_ROLES = {
    "movieid": "item_id",
    "itemid": "item_id",
    "item": "item_id",
    "movie": "item_id",
    "title": "title",
    "genres": "genres",
    "genre": "genres",
    "year": "year",
}
_NO_GENRES = "(no genres listed)"  # MovieLens' movies.csv placeholder, not a genre
_log = logging.getLogger(__name__)


def load_csv(
    ratings_path: Path,
    items_path: Path | None = None,
    *,
    separator: str | None = None,
    scale: tuple[float, float] = DEFAULT_SCALE,
) -> RawTables:
    """Ratings (and optional items) files, `.gz` accepted. Ids become Int64 when all are integers, else String.

    Duplicates are checked after ids are typed, so "7" and "07" count as the same integer id. A (user, item) pair
    rated twice differently is an error; a line repeated exactly is dropped with a warning. A rating outside
    `scale` is an error naming its line.
    """
    ratings, ratings_src = _read_ratings(ratings_path, separator, scale)
    items, items_src = _read_items(items_path, separator) if items_path is not None else (None, None)
    (user_ids,) = integer_ids_if_possible(ratings["user_id"])
    item_ids = integer_ids_if_possible(ratings["item_id"], *([] if items is None else [items["item_id"]]))
    ratings = ratings.with_columns(user_ids, item_ids[0])
    check_unique(ratings, ("user_id", "item_id"), ratings_src, what="rating")
    ratings = drop_repeated_rows(ratings, ratings_src)
    if items is not None and items_src is not None:
        items = items.with_columns(item_ids[1])
        check_unique(items, ("item_id",), items_src, what="item")
        items = drop_repeated_rows(items, items_src)
    return RawTables(ratings, None, items)


def _read_ratings(path: Path, separator: str | None, scale: tuple[float, float]) -> tuple[pl.DataFrame, TextSource]:
    src = _source(path, separator)
    columns = _columns(src, _RATING_ROLES)
    if missing := [role for role in ("user_id", "item_id", "rating") if role not in columns]:
        raise DataError(
            f"{src.label}: header lacks {', '.join(missing)} column(s) (read as "
            f"{src.separator_name}-separated: {_shown(src)}); expected e.g. userId,movieId,rating"
            f"[,timestamp]{_sep_hint(separator)}"
        )
    has_time = "timestamp" in columns
    kinds: dict[str, Kind] = {columns["rating"]: "float", **({columns["timestamp"]: "int"} if has_time else {})}
    ratings = read_table(src, None, required=[columns["user_id"], columns["item_id"], *kinds], kinds=kinds)
    if ratings.is_empty():
        raise DataError(f"{src.label}: no ratings (the file has a header and no data lines)")
    timestamp = pl.col(columns["timestamp"]) if has_time else pl.lit(None, pl.Int64)
    ratings = ratings.select(
        pl.col(columns["user_id"]).alias("user_id"),
        pl.col(columns["item_id"]).alias("item_id"),
        pl.col(columns["rating"]).alias("rating"),
        timestamp.alias("timestamp"),
    )
    check_rating_scale(ratings, src, scale)
    _log_columns(src, columns)
    return ratings, src


def _read_items(path: Path, separator: str | None) -> tuple[pl.DataFrame, TextSource]:
    src = _source(path, separator)
    columns = _columns(src, _ITEM_ROLES)
    if "item_id" not in columns:
        raise DataError(
            f"{src.label}: header needs an item id column (movieId, item_id, ...); read as "
            f"{src.separator_name}-separated: {_shown(src)}{_sep_hint(separator)}"
        )
    kinds: dict[str, Kind] = {columns["year"]: "int"} if "year" in columns else {}
    items = read_table(src, None, required=[columns["item_id"]], kinds=kinds)
    items = items.select(pl.col(name).alias(role) for role, name in columns.items())
    if "genres" in items.columns:
        genres = pl.col("genres").str.strip_chars()
        items = items.with_columns(pl.when(genres.is_in(["", _NO_GENRES])).then(None).otherwise(genres).alias("genres"))
    if "year" in items.columns:
        items = items.with_columns(pl.col("year").cast(pl.Int32))
    elif "title" in items.columns:
        # MovieLens titles carry the year, "Toy Story (1995)": kept in the title, as for the official archives.
        items = items.with_columns(year=year_from_title(pl.col("title")))
    _log_columns(src, columns)
    return items, src


def _log_columns(src: TextSource, columns: dict[str, str]) -> None:
    """Say how a file was read when that is not the obvious (comma-separated, columns named as ours)."""
    if src.separator_name == "comma" and all(role == name for role, name in columns.items()):
        return
    _log.info(
        "%s: %s-separated; columns used: %s",
        src.label,
        src.separator_name,
        ", ".join(f"{role}={name}" for role, name in columns.items()),
    )


def _columns(src: TextSource, roles: dict[str, str]) -> dict[str, str]:
    """Role -> the header's column name for it (the first of several candidates wins)."""
    found: dict[str, str] = {}
    for name in src.header_names():
        role = roles.get(name.lower().replace("_", "").replace(" ", ""))
        if role is not None and role not in found:
            found[role] = name
    return found


def _shown(src: TextSource) -> str:
    names = src.header_names()
    return ", ".join(repr(n) for n in names[:6]) + (", ..." if len(names) > 6 else "") if names else "nothing"


def _sep_hint(separator: str | None) -> str:
    return "" if separator is not None else "; give the separator with --sep if it is not that"


def sniff_separator(first_line: str) -> str:
    """The candidate separator splitting the header line into the most fields (comma when none occurs)."""
    line = first_line.replace("::", "\0")  # `::` must not also count as two `:`-free fields of another separator
    counts = {sep: (line.count("\0") if sep == "::" else line.count(sep)) for sep in SEPARATORS}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _source(path: Path, separator: str | None) -> TextSource:
    raw = read_bytes(path)
    if separator is None:
        separator = sniff_separator(raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace"))
    return TextSource.from_bytes(
        path.name,
        raw,
        separator=separator,
        separator_name=SEPARATORS.get(separator, repr(separator)),
        quoted=True,
        header=True,
    )
