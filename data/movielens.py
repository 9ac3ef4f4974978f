"""Parsers for the official GroupLens MovieLens 100K and 1M folders (latin-1 text; tab, `|` and `::` separated)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from data.parsing import (
    Kind,
    RawTables,
    TextSource,
    check_rating_scale,
    check_unique,
    drop_repeated_rows,
    read_table,
    year_from_title,
)
from e2ep.errors import DataError

_LATIN1 = "latin-1"
_RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
_RATING_KINDS: Mapping[str, Kind] = {"user_id": "int", "item_id": "int", "rating": "float", "timestamp": "int"}
_ML100K_ITEM_FIELDS = ("item_id", "title", "release_date", "video_release_date", "imdb_url")
_ML100K_GENRE_COUNT = 19
MOVIELENS_SCALE = (1.0, 5.0)
"""The whole-star scale both official archives declare; a rating outside it is an error."""
# ML-1M stores occupations as codes; these are the names its README gives, matching ML-100K's textual ones.
_ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer", "programmer",
    "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
    "unemployed", "writer",
)  # fmt: skip


def read_ml100k_ratings(path: Path, scale: tuple[float, float] = MOVIELENS_SCALE) -> pl.DataFrame:
    """A tab-separated `user item rating timestamp` file: `u.data` or one of the official `uN.base/.test` splits."""
    return _read_ratings(_source(path, "\t", "tab"), scale)


def load_ml100k(folder: Path, scale: tuple[float, float] = MOVIELENS_SCALE) -> RawTables:
    """`u.data`, `u.item` (genres named by `u.genre`) and `u.user` of an extracted ml-100k folder."""
    users = _read_metadata(
        _source(folder / "u.user", "|", "'|'"),
        names=("user_id", "age", "gender", "occupation", "zip_code"),
        kinds={"user_id": "int", "age": "int"},
    ).with_columns(pl.col("age").cast(pl.Int32))
    return RawTables(read_ml100k_ratings(folder / "u.data", scale), users, _ml100k_items(folder))


def load_ml1m(folder: Path, scale: tuple[float, float] = MOVIELENS_SCALE) -> RawTables:
    """`ratings.dat`, `movies.dat` and `users.dat` of an extracted ml-1m folder.

    `age` stays ML-1M's bucket code (the bucket's lower bound; 1 means under 18); occupations become names.
    """
    ratings = _read_ratings(_source(folder / "ratings.dat", "::", "'::'"), scale)
    movies = _read_metadata(
        _source(folder / "movies.dat", "::", "'::'"), names=("item_id", "title", "genres"), kinds={"item_id": "int"}
    ).with_columns(year=year_from_title(pl.col("title")))
    users = _read_metadata(
        _source(folder / "users.dat", "::", "'::'"),
        names=("user_id", "gender", "age", "occupation", "zip_code"),
        kinds={"user_id": "int", "age": "int", "occupation": "int"},
    ).with_columns(
        pl.col("age").cast(pl.Int32),
        pl.col("occupation").replace_strict(list(range(len(_ML1M_OCCUPATIONS))), _ML1M_OCCUPATIONS, default=None),
    )
    return RawTables(ratings, users, movies)


def _ml100k_items(folder: Path) -> pl.DataFrame:
    genres = _ml100k_genres(folder / "u.genre")
    flags = [f"genre_{i}" for i in range(_ML100K_GENRE_COUNT)]
    items = _read_metadata(
        _source(folder / "u.item", "|", "'|'"),
        names=(*_ML100K_ITEM_FIELDS, *flags),
        kinds=dict.fromkeys(["item_id", *flags], "int"),
    )
    named = [pl.when(pl.col(flag) == 1).then(pl.lit(name)) for flag, name in zip(flags, genres, strict=True)]
    release_year = pl.col("release_date").str.slice(-4).cast(pl.Int32, strict=False)
    return items.select(
        "item_id",
        "title",
        # Titles carry the year ("Toy Story (1995)"); the release date covers the few that do not.
        pl.coalesce(year_from_title(pl.col("title")), release_year).alias("year"),
        pl.concat_str(named, separator="|", ignore_nulls=True).replace("", None).alias("genres"),
        "release_date",
        "imdb_url",
    )


def _ml100k_genres(path: Path) -> list[str]:
    """Genre names in flag order, as listed by `u.genre` (`name|index`)."""
    table = read_table(
        _source(path, "|", "'|'"), names=("genre", "index"), required=("genre", "index"), kinds={"index": "int"}
    )
    if table["index"].sort().to_list() != list(range(_ML100K_GENRE_COUNT)):
        raise DataError(f"{path.name}: expected genres numbered 0..{_ML100K_GENRE_COUNT - 1}")
    return table.sort("index")["genre"].to_list()


def _read_ratings(src: TextSource, scale: tuple[float, float]) -> pl.DataFrame:
    ratings = read_table(src, names=_RATING_COLUMNS, required=_RATING_COLUMNS, kinds=_RATING_KINDS)
    check_rating_scale(ratings, src, scale)
    check_unique(ratings, ("user_id", "item_id"), src, what="rating")
    return drop_repeated_rows(ratings, src)


def _read_metadata(src: TextSource, names: tuple[str, ...], kinds: Mapping[str, Kind]) -> pl.DataFrame:
    """A user or item table keyed by its first column; the last column is required so short lines are caught."""
    table = read_table(src, names=names, required=(names[0], names[-1]), kinds=kinds)
    check_unique(table, names[:1], src, what="entry")
    return drop_repeated_rows(table, src)


def _source(path: Path, separator: str, separator_name: str) -> TextSource:
    return TextSource.open(path, separator=separator, separator_name=separator_name, encoding=_LATIN1)
