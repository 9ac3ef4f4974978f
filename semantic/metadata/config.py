"""Settings of the item-metadata stage. Credentials are never part of them: only where they live (see e2ep.secrets)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from e2ep.configbase import Strict as _Strict

MetadataSource = Literal["tmdb", "local", "movielens"]
API_BASE_ENV = "TMDB_API_BASE"
DEFAULT_API_BASE = "https://api.themoviedb.org/3"
CACHE_DIR_ENV = "E2EP_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/e2ep")


class TMDBConfig(_Strict):
    """How the TMDB API is called. Set `TMDB_READ_TOKEN` (v4, preferred) or `TMDB_API_KEY` (v3) in the environment,
    or name Prefect Secret blocks in `read_token_secret` / `api_key_secret`."""

    api_base: str | None = None
    """API root URL. Defaults to `$TMDB_API_BASE`, else https://api.themoviedb.org/3."""

    language: str = "en-US"
    """Language of titles, overviews and genre names (TMDB `language` parameter)."""

    requests_per_second: Annotated[float, Field(gt=0, le=50)] = 10.0
    """Client-side rate limit shared by all worker threads (TMDB allows about 40 per second)."""

    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    """Per-request timeout; a timed-out request is retried like a 5xx."""

    max_retries: Annotated[int, Field(ge=0, le=20)] = 5
    """Retries of one request after 429 (honouring Retry-After), 5xx, timeouts and connection errors."""

    backoff_seconds: Annotated[float, Field(ge=0)] = 1.0
    """First retry delay for 5xx/network errors; doubles per attempt (capped at 60 s), plus up to 50% jitter."""

    workers: Annotated[int, Field(ge=1, le=32)] = 4
    """Items looked up concurrently; the rate limit still holds across all of them."""

    read_token_secret: str = "TMDB_READ_TOKEN"
    """Where the v4 read token lives (preferred): an environment variable's name or `prefect-secret:<block>`."""

    api_key_secret: str = "TMDB_API_KEY"
    """Where the v3 API key lives, used when there is no read token: a variable's name or `prefect-secret:<block>`."""

    cache_dir: str | None = None
    """Disk cache of responses (a rerun makes no requests). Defaults to `$E2EP_CACHE_DIR/tmdb` or
    `~/.cache/e2ep/tmdb`."""

    def resolved_api_base(self) -> str:
        return (self.api_base or os.environ.get(API_BASE_ENV) or DEFAULT_API_BASE).rstrip("/")

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser() / "tmdb"


class MetadataConfig(_Strict):
    source: MetadataSource = "movielens"
    """`tmdb` (live API, cached), `local` (a metadata CSV keyed by item id) or `movielens` (title and genres only)."""

    local_path: str | None = None
    """`local` only: CSV (.gz ok) with a `movie_id` or `item_id` column plus any of overview, omdb_plot,
    tmdb_genres, keywords, director, actors, tmdb_id, tmdb_title. Lists may be `A|B`, `A, B` or JSON."""

    tmdb: TMDBConfig = TMDBConfig()
    """`tmdb` only: API settings."""

    @model_validator(mode="after")
    def _local_needs_path(self) -> MetadataConfig:
        if self.source == "local" and not self.local_path:
            raise ValueError("metadata source 'local' needs local_path (a CSV keyed by movie_id or item_id)")
        return self
