"""The generic `csv` dataset: any ratings file with a `user_id,item_id,rating[,timestamp]` header plus optional item
metadata, so data other than the official MovieLens archives (e.g. the seed paper's own split) can be used."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from e2ep.data.parsing import (
    Kind,
    RawTables,
    TextSource,
    check_unique,
    drop_repeated_rows,
    integer_ids_if_possible,
    read_table,
)
from e2ep.errors import DataError

_ITEM_ALIASES = ("item_id", "movie_id")
_ITEM_METADATA = ("title", "genres", "year")


def load_csv(ratings_path: Path, items_path: Path | None = None) -> RawTables:
    """Ratings (and optional items) CSV files, `.gz` accepted. Ids become Int64 when all are integers, else String.

    Duplicates are checked after ids are typed, so "7" and "07" count as the same integer id. A (user, item) pair
    rated twice differently is an error; a line repeated exactly is dropped with a warning.
    """
    ratings, ratings_src = _read_ratings(ratings_path)
    items, items_src = _read_items(items_path) if items_path is not None else (None, None)
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


def _read_ratings(path: Path) -> tuple[pl.DataFrame, TextSource]:
    src = _source(path)
    header = src.header_names()
    item_column = _item_column(header, src.label)
    if missing := [c for c in ("user_id", "rating") if c not in header]:
        raise DataError(f"{src.label}: header lacks {', '.join(missing)} (need user_id, item_id or movie_id, rating)")
    has_time = "timestamp" in header
    kinds: dict[str, Kind] = {"rating": "float", **({"timestamp": "int"} if has_time else {})}
    ratings = read_table(src, None, required=["user_id", item_column, *kinds], kinds=kinds)
    timestamp = pl.col("timestamp") if has_time else pl.lit(None, pl.Int64).alias("timestamp")
    return ratings.select("user_id", pl.col(item_column).alias("item_id"), "rating", timestamp), src


def _read_items(path: Path) -> tuple[pl.DataFrame, TextSource]:
    src = _source(path)
    header = src.header_names()
    item_column = _item_column(header, src.label)
    kinds: dict[str, Kind] = {"year": "int"} if "year" in header else {}
    items = read_table(src, None, required=[item_column], kinds=kinds).rename({item_column: "item_id"})
    items = items.select("item_id", *(c for c in _ITEM_METADATA if c in header))
    return (items.with_columns(pl.col("year").cast(pl.Int32)) if kinds else items), src


def _item_column(header: list[str], label: str) -> str:
    for name in _ITEM_ALIASES:
        if name in header:
            return name
    raise DataError(f"{label}: header needs an item_id (or movie_id) column; found {', '.join(header) or 'nothing'}")


def _source(path: Path) -> TextSource:
    return TextSource.open(path, separator=",", separator_name="comma", quoted=True, header=True)
