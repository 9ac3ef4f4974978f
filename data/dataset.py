"""The in-memory dataset every later stage uses: ratings with contiguous 0-based indices, plus user/item metadata."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from data.config import DatasetConfig
from data.csvdata import load_csv
from data.download import ARCHIVES, ArchiveSpec, locate_movielens
from data.files import atomic_directory
from data.movielens import load_ml1m, load_ml100k
from data.parsing import RawTables
from e2ep.errors import DataError

_FORMAT_VERSION = 1
_TABLES = ("ratings", "users", "items")
_RATINGS_SCHEMA = {"user_idx": pl.Int32, "item_idx": pl.Int32, "rating": pl.Float32, "timestamp": pl.Int64}
_ITEM_COLUMNS = {"title": pl.String, "year": pl.Int32, "genres": pl.String}


@dataclass(frozen=True)
class Dataset:
    """Ratings keyed by `user_idx` / `item_idx` (0-based, assigned in sorted order of the original ids).

    ratings: user_idx Int32, item_idx Int32, rating Float32, timestamp Int64 (nullable), sorted by user then item.
    users: user_idx, user_id (Int64 if every id is an integer, else String), then any attribute columns.
    items: item_idx, item_id, title, year Int32, genres ("Action|Comedy"), then any other metadata.
    Users and items listed in metadata but never rated still get an index, so indices match the official files.
    source_dir: the extracted folder the data came from (official ML-100K splits are read from it).
    """

    name: str
    ratings: pl.DataFrame
    users: pl.DataFrame
    items: pl.DataFrame
    source_dir: str | None

    @property
    def n_users(self) -> int:
        return self.users.height

    @property
    def n_items(self) -> int:
        return self.items.height

    def with_original_ids(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` (keyed by `user_idx` and `item_idx`) joined to the original `user_id` and `item_id`."""
        return frame.join(self.users.select("user_idx", "user_id"), on="user_idx").join(
            self.items.select("item_idx", "item_id"), on="item_idx"
        )

    def item_titles(self) -> pl.DataFrame | None:
        """item_id, title (None when the items have no titles)."""
        return self.items.select("item_id", "title") if "title" in self.items.columns else None


def load_dataset(cfg: DatasetConfig, archives: Mapping[str, ArchiveSpec] = ARCHIVES) -> Dataset:
    """Load `cfg.name`: MovieLens from a local folder, the cache or a verified download; `csv` from its paths."""
    if cfg.name == "csv":
        assert cfg.ratings_path is not None  # guaranteed by DatasetConfig's validator
        items_path = Path(cfg.items_path) if cfg.items_path else None
        raw = load_csv(Path(cfg.ratings_path), items_path, separator=cfg.separator, scale=cfg.scale())
        return build_dataset("csv", raw, source_dir=None)
    folder = locate_movielens(cfg, archives)
    raw = (load_ml100k if cfg.name == "ml-100k" else load_ml1m)(folder, cfg.scale())
    return build_dataset(cfg.name, raw, source_dir=str(folder))


def build_dataset(name: str, raw: RawTables, source_dir: str | None) -> Dataset:
    """Assign indices (sorted original ids, metadata-only entries included) and attach them to every table."""
    if raw.ratings.is_empty():
        raise DataError(f"dataset {name} has no ratings")
    users = _index(raw.ratings["user_id"], raw.users, "user")
    items = _standard_item_columns(_index(raw.ratings["item_id"], raw.items, "item"))
    ratings = (
        raw.ratings.join(users.select("user_id", "user_idx"), on="user_id")
        .join(items.select("item_id", "item_idx"), on="item_id")
        .select(pl.col(c).cast(t) for c, t in _RATINGS_SCHEMA.items())
        .sort("user_idx", "item_idx")
    )
    return Dataset(name, ratings, users, items, source_dir)


def _index(rated: pl.Series, metadata: pl.DataFrame | None, kind: str) -> pl.DataFrame:
    """`<kind>_idx`, `<kind>_id` for the union of rated and listed ids, in id order, with the metadata joined on."""
    key = f"{kind}_id"
    ids = rated if metadata is None else pl.concat([rated, metadata[key]])
    index = (
        ids.unique()
        .sort()
        .to_frame(key)
        .with_row_index(f"{kind}_idx")
        .with_columns(pl.col(f"{kind}_idx").cast(pl.Int32))
    )
    return index if metadata is None else index.join(metadata, on=key, how="left")


def _standard_item_columns(items: pl.DataFrame) -> pl.DataFrame:
    """Every dataset's items have title, year and genres (null when unknown), so consumers need no special cases."""
    missing = [pl.lit(None, dtype).alias(c) for c, dtype in _ITEM_COLUMNS.items() if c not in items.columns]
    front = ["item_idx", "item_id", *_ITEM_COLUMNS]
    return items.with_columns(missing).select(
        *front[:2], *(pl.col(c).cast(t) for c, t in _ITEM_COLUMNS.items()), pl.exclude(front)
    )


def save_dataset(ds: Dataset, directory: Path) -> None:
    """Write the three tables as parquet plus `meta.json`; the folder appears complete or not at all."""
    meta = {"format": _FORMAT_VERSION, "name": ds.name, "source_dir": ds.source_dir}
    with atomic_directory(Path(directory)) as tmp:
        for table in _TABLES:
            getattr(ds, table).write_parquet(tmp / f"{table}.parquet")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def read_dataset(directory: Path) -> Dataset:
    """Read a folder written by :func:`save_dataset`."""
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"{directory} holds no saved dataset (meta.json missing)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != _FORMAT_VERSION:
        raise DataError(f"{directory}: saved dataset format {meta.get('format')} is not {_FORMAT_VERSION}; rebuild it")
    tables = {table: pl.read_parquet(directory / f"{table}.parquet") for table in _TABLES}
    return Dataset(meta["name"], tables["ratings"], tables["users"], tables["items"], meta["source_dir"])
