"""One metadata row per item, from TMDB, a local file or MovieLens alone, with a coverage report.

Items nothing was found for keep their MovieLens title (natural word order, no year) and genres, with a null
overview and empty keyword/cast lists, so every consumer sees the same columns for every item.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from e2ep.errors import DataError
from semantic.metadata.config import MetadataConfig
from semantic.metadata.local import read_local_metadata
from semantic.metadata.titles import clean_title
from semantic.metadata.tmdb import MovieDetails, TMDBClient

log = logging.getLogger(__name__)
_STRINGS = pl.List(pl.String)
OUTPUT_SCHEMA = {
    "item_idx": pl.Int32,
    "title": pl.String,
    "year": pl.Int32,
    "genres": _STRINGS,
    "overview": pl.String,
    "keywords": _STRINGS,
    "director": pl.String,
    "cast": _STRINGS,
    "tmdb_id": pl.Int64,
    "metadata_source": pl.String,
}
# What a source contributes, joined onto the items by item_idx; `matched` marks a row the source knew.
_FOUND_SCHEMA = {
    "item_idx": pl.Int32,
    "found_title": pl.String,
    "found_year": pl.Int32,
    "found_genres": _STRINGS,
    "overview": pl.String,
    "keywords": _STRINGS,
    "director": pl.String,
    "cast": _STRINGS,
    "tmdb_id": pl.Int64,
}
_PROGRESS_EVERY = 200


@dataclass(frozen=True)
class EnrichmentReport:
    """Coverage counts over all items; `per_source` counts rows by `metadata_source`."""

    source: str
    items: int
    matched: int
    with_tmdb_id: int
    with_overview: int
    with_keywords: int
    with_director: int
    with_cast: int
    per_source: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    cache_hits: int = 0

    def summary(self) -> str:
        pct = lambda n: f"{n} ({100.0 * n / self.items:.1f}%)" if self.items else str(n)  # noqa: E731
        text = (
            f"metadata[{self.source}]: {self.items} items, matched {pct(self.matched)}, "
            f"tmdb id {pct(self.with_tmdb_id)}, overview {pct(self.with_overview)}, "
            f"keywords {pct(self.with_keywords)}, director {pct(self.with_director)}, cast {pct(self.with_cast)}; "
            f"by source {self.per_source}"
        )
        return text + (f"; {self.requests} requests, {self.cache_hits} cached" if self.source == "tmdb" else "")


@dataclass(frozen=True)
class EnrichmentResult:
    items: pl.DataFrame
    report: EnrichmentReport


def enrich_items(items: pl.DataFrame, cfg: MetadataConfig, *, client: TMDBClient | None = None) -> EnrichmentResult:
    """Metadata for every row of `items` (a `Dataset.items` frame: item_idx, item_id, title, year, genres).

    `client` overrides the TMDB client built from `cfg.tmdb` (credentials from the environment), e.g. in tests.
    """
    missing = [c for c in ("item_idx", "item_id", "title", "year", "genres") if c not in items.columns]
    if missing:
        raise DataError(f"items table lacks column(s) {missing}; expected a Dataset.items frame")
    base = _movielens_base(items)
    requests = cache_hits = 0
    if cfg.source == "local":
        assert cfg.local_path is not None  # guaranteed by MetadataConfig's validator
        found = _from_local(items, cfg.local_path)
    elif cfg.source == "tmdb":
        own = client is None
        client = client or TMDBClient(cfg.tmdb)  # missing credentials fail here, before any work
        try:
            found = _from_tmdb(items, client, cfg.tmdb.workers)
            requests, cache_hits = client.stats.requests, client.stats.cache_hits
        finally:
            if own:
                client.close()
    else:
        found = pl.DataFrame(schema=_FOUND_SCHEMA)
    frame = _combine(base, found, cfg.source)
    report = _report(frame, cfg.source, requests, cache_hits)
    log.info(report.summary())
    return EnrichmentResult(frame, report)


def _movielens_base(items: pl.DataFrame) -> pl.DataFrame:
    natural = lambda t: clean_title(t).primary  # noqa: E731
    return items.select(
        pl.col("item_idx").cast(pl.Int32),
        pl.col("title").cast(pl.String).map_elements(natural, return_dtype=pl.String).alias("ml_title"),
        pl.col("year").cast(pl.Int32),
        pl.col("genres")
        .cast(pl.String)
        .str.split("|")
        .list.eval(pl.element().filter(pl.element() != ""))
        .alias("ml_genres"),
    )


def _from_local(items: pl.DataFrame, path: str) -> pl.DataFrame:
    local = read_local_metadata(path)
    keyed = items.select(pl.col("item_idx").cast(pl.Int32), pl.col("item_id").cast(pl.String).alias("key"))
    joined = keyed.join(local, on="key", how="inner")
    has_any = pl.any_horizontal(
        pl.col("tmdb_id").is_not_null(),
        pl.col("overview").is_not_null(),
        pl.col("director").is_not_null(),
        *(pl.col(c).list.len() > 0 for c in ("genres", "keywords", "cast")),
    )
    return joined.filter(has_any).select(
        "item_idx",
        pl.col("title").alias("found_title"),
        pl.lit(None, pl.Int32).alias("found_year"),
        pl.col("genres").alias("found_genres"),
        "overview",
        "keywords",
        "director",
        "cast",
        "tmdb_id",
    )


def _from_tmdb(items: pl.DataFrame, client: TMDBClient, workers: int) -> pl.DataFrame:
    rows = items.select(pl.col("item_idx").cast(pl.Int32), "title", pl.col("year").cast(pl.Int32)).rows()
    total = len(rows)

    def look_up(position_row: tuple[int, tuple[int, str | None, int | None]]) -> MovieDetails | None:
        position, (_, title, year) = position_row
        details = client.lookup(title, year)
        if (position + 1) % _PROGRESS_EVERY == 0:
            log.info("TMDB: %d/%d items looked up", position + 1, total)
        return details

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tmdb") as pool:
        results = list(pool.map(look_up, enumerate(rows)))
    found = [
        {
            "item_idx": idx,
            "found_title": d.title,
            "found_year": int(d.release_date[:4]) if d.release_date and d.release_date[:4].isdigit() else None,
            "found_genres": d.genres,
            "overview": d.overview,
            "keywords": d.keywords,
            "director": d.director,
            "cast": d.cast,
            "tmdb_id": d.tmdb_id,
        }
        for (idx, _, _), d in zip(rows, results, strict=True)
        if d is not None
    ]
    return pl.DataFrame(found, schema=_FOUND_SCHEMA)


def _combine(base: pl.DataFrame, found: pl.DataFrame, source: str) -> pl.DataFrame:
    empty = pl.lit([], _STRINGS)
    joined = base.join(found.with_columns(matched=pl.lit(True)), on="item_idx", how="left")
    non_empty = lambda c: pl.when(pl.col(c).list.len() > 0).then(pl.col(c))  # noqa: E731
    return (
        joined.select(
            "item_idx",
            pl.coalesce("found_title", "ml_title").alias("title"),
            pl.coalesce("year", "found_year").alias("year"),
            pl.coalesce(non_empty("found_genres"), "ml_genres", empty).alias("genres"),
            "overview",
            pl.coalesce("keywords", empty).alias("keywords"),
            "director",
            pl.coalesce("cast", empty).alias("cast"),
            "tmdb_id",
            pl.when(pl.col("matched")).then(pl.lit(source)).otherwise(pl.lit("movielens")).alias("metadata_source"),
        )
        .cast(OUTPUT_SCHEMA)  # pyright: ignore[reportArgumentType]  # polars types keys invariantly
        .sort("item_idx")
    )


def _report(frame: pl.DataFrame, source: str, requests: int, cache_hits: int) -> EnrichmentReport:
    counts = frame.select(
        matched=(pl.col("metadata_source") != "movielens").sum(),
        with_tmdb_id=pl.col("tmdb_id").is_not_null().sum(),
        with_overview=pl.col("overview").is_not_null().sum(),
        with_keywords=(pl.col("keywords").list.len() > 0).sum(),
        with_director=pl.col("director").is_not_null().sum(),
        with_cast=(pl.col("cast").list.len() > 0).sum(),
    ).row(0, named=True)
    per_source = dict(frame["metadata_source"].value_counts().sort("metadata_source").iter_rows())
    return EnrichmentReport(
        source=source,
        items=frame.height,
        **{k: int(v) for k, v in counts.items()},
        per_source={k: int(v) for k, v in per_source.items()},
        requests=requests,
        cache_hits=cache_hits,
    )
