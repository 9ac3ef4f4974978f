"""A small TMDB API client: title search with fallbacks, details with keywords and credits, polite and cached.

Every request passes one shared token bucket (`requests_per_second`), retries 429 after `Retry-After` and
5xx/network errors with exponential backoff and jitter, and every definitive answer (200, or 404 for an id) is kept
in a disk cache keyed by path and parameters, never by credentials, so a rerun makes no requests at all.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import diskcache
import httpx

from e2ep.errors import ConfigError, DataError
from e2ep.secrets import resolve_secret
from semantic.metadata.config import TMDBConfig
from semantic.metadata.throttle import TokenBucket, retry_after_seconds
from semantic.metadata.titles import SearchTitle, clean_title, normalise

API_KEY_ENV = "TMDB_API_KEY"
READ_TOKEN_ENV = "TMDB_READ_TOKEN"
_NOT_FOUND = {"__status__": 404}
_MAX_BACKOFF_S = 60.0
_TOP_CAST = 5
_SECRET_IN_URL = re.compile(r"(api_key=)[^&\s\"']+")
log = logging.getLogger(__name__)


class _RedactSecrets(logging.Filter):
    """httpx logs request URLs at INFO and httpcore request lines at DEBUG; a v3 key travels in that URL, so each
    record is rendered and masked before any handler sees it (arguments can be objects whose repr holds the URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = _redact(record.getMessage()), ()
        return True


def _redact(value: Any) -> str:
    return _SECRET_IN_URL.sub(r"\1***", str(value))


# Logger filters do not apply to child loggers, so every logger that can print a request line is named.
for _name in ("httpx", "httpcore", "httpcore.http11", "httpcore.http2", "httpcore.connection", "httpcore.proxy"):
    if not any(isinstance(f, _RedactSecrets) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_RedactSecrets())


@dataclass(frozen=True)
class Credentials:
    """A v4 read token (sent as `Authorization: Bearer`) or a v3 key (sent as `api_key`); repr never shows them."""

    read_token: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Credentials:
        token, key = env.get(READ_TOKEN_ENV, "").strip(), env.get(API_KEY_ENV, "").strip()
        if not token and not key:
            raise ConfigError(f"TMDB needs credentials: set {READ_TOKEN_ENV} (v4 read token) or {API_KEY_ENV} (v3 key)")
        return cls(read_token=token or None, api_key=None if token else key)

    @classmethod
    def from_config(cls, cfg: TMDBConfig) -> Credentials:
        """Look up the secrets `cfg` names (environment variables or `prefect-secret:<block>`) now, at use."""
        token, key = resolve_secret(cfg.read_token_secret), resolve_secret(cfg.api_key_secret)
        if not token and not key:
            raise ConfigError(
                f"TMDB needs credentials: set {cfg.read_token_secret} (v4 read token) or {cfg.api_key_secret} (v3 key)"
            )
        return cls(read_token=(token or "").strip() or None, api_key=None if token else (key or "").strip())


@dataclass(frozen=True)
class MovieDetails:
    tmdb_id: int
    title: str | None
    release_date: str | None
    overview: str | None
    genres: list[str]
    keywords: list[str]
    director: str | None
    cast: list[str]
    imdb_id: str | None = None


@dataclass
class ClientStats:
    """Counts for reports and tests: HTTP requests actually sent, answers served from the cache, retries."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class TMDBClient:
    """`search_movie`, `movie_details` and `lookup` (both, from a MovieLens title). Safe to share between threads."""

    def __init__(
        self,
        cfg: TMDBConfig,
        credentials: Credentials | None = None,
        *,
        cache: diskcache.Cache | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self._credentials = credentials or Credentials.from_config(cfg)
        self._base = cfg.resolved_api_base()
        headers = {"Accept": "application/json"}
        if self._credentials.read_token:
            headers["Authorization"] = f"Bearer {self._credentials.read_token}"
        self._http = httpx.Client(headers=headers, timeout=cfg.timeout_seconds)
        self._cache = cache if cache is not None else diskcache.Cache(str(cfg.resolved_cache_dir()))
        self._limiter = TokenBucket(cfg.requests_per_second)
        self._sleep = sleep
        self.stats = ClientStats()

    def close(self) -> None:
        self._http.close()
        self._cache.close()

    def __enter__(self) -> TMDBClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API -------------------------------------------------------------------------------------------------

    def search_movie(self, title: str, year: int | None = None) -> dict[str, Any] | None:
        """Best `/search/movie` result for `title`: with `year` first, then without it accepting year +-1.

        Without a year only an exact (normalised) title match is accepted, so "unknown" never becomes a film.
        """
        if not title.strip():
            return None
        if year is not None:
            hit = self._best(self._search(title, year), title, years=None)
            if hit is not None:
                return hit
        results = self._search(title, None)
        if year is None:
            return self._best(results, title, years=None, exact_only=True)
        return self._best(results, title, years={year - 1, year, year + 1})

    def movie_details(self, tmdb_id: int) -> MovieDetails | None:
        """`/movie/{id}` with keywords and credits; None when TMDB has no such id (404)."""
        data = self._get(f"/movie/{int(tmdb_id)}", {"append_to_response": "keywords,credits"})
        return None if data is None else parse_details(data)

    def lookup(self, ml_title: str | None, year: int | None = None) -> MovieDetails | None:
        """Search each candidate of the cleaned MovieLens title in turn, then fetch the first hit's details."""
        if not ml_title:
            return None
        wanted: SearchTitle = clean_title(ml_title)
        year = wanted.year if wanted.year is not None else year
        for candidate in wanted.candidates:
            hit = self.search_movie(candidate, year)
            if hit is not None:
                return self.movie_details(int(hit["id"]))
        return None

    # -- matching ------------------------------------------------------------------------------------------------

    def _search(self, title: str, year: int | None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": title, "include_adult": "false"}
        if year is not None:
            params["year"] = year
        data = self._get("/search/movie", params)
        return list((data or {}).get("results") or [])

    @staticmethod
    def _best(
        results: list[dict[str, Any]], title: str, years: set[int] | None, exact_only: bool = False
    ) -> dict[str, Any] | None:
        """Exact title matches first, then TMDB's own relevance order; restricted to `years` when given."""
        pool = [r for r in results if r.get("id") is not None and (years is None or _year(r) in years)]
        key = normalise(title)
        exact = [r for r in pool if key in {normalise(r.get("title") or ""), normalise(r.get("original_title") or "")}]
        if exact or exact_only:
            return exact[0] if exact else None
        return pool[0] if pool else None

    # -- HTTP ----------------------------------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """A cached GET: the JSON body, or None for 404. Credentials are added after the cache key is made."""
        query = {**params, "language": self.cfg.language}
        key = cache_key(path, query)
        cached: Any = self._cache.get(key)  # diskcache's get is untyped
        if cached is not None:
            self.stats.add(cache_hits=1)
            return None if cached == _NOT_FOUND else cached
        data = self._fetch(path, query)
        self._cache.set(key, _NOT_FOUND if data is None else data)
        return data

    def _fetch(self, path: str, query: dict[str, Any]) -> dict[str, Any] | None:
        sent = dict(query)
        if self._credentials.api_key:
            sent["api_key"] = self._credentials.api_key
        problem = ""
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                self.stats.add(retries=1)
            self._limiter.acquire()
            self.stats.add(requests=1)
            try:
                response = self._http.get(self._base + path, params=sent)
            except httpx.TransportError as exc:  # timeouts and connection errors
                problem = f"{type(exc).__name__}: {_redact(exc)}"
                if attempt < self.cfg.max_retries:
                    self._sleep(self._backoff(attempt))
                continue
            status = response.status_code
            if status == 200:
                try:
                    return response.json()
                except json.JSONDecodeError:
                    raise DataError(f"TMDB {path}: response is not JSON") from None
            if status == 401:
                raise ConfigError(
                    f"TMDB rejected the credentials (401) on {path}: check {READ_TOKEN_ENV}/{API_KEY_ENV}"
                )
            if status == 404:
                return None
            problem = f"HTTP {status}"
            if status == 429:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                wait = self._backoff(attempt) if wait is None else wait
                log.info("TMDB rate limit hit on %s; waiting %.1f s", path, wait)
                self._limiter.pause(wait)
            elif status >= 500:
                if attempt < self.cfg.max_retries:
                    self._sleep(self._backoff(attempt))
            else:
                raise DataError(f"TMDB {path} answered HTTP {status}: {_redact(response.text[:200])}")
        raise DataError(f"TMDB {path} still failing after {self.cfg.max_retries} retries ({problem}); rerun to resume")

    def _backoff(self, attempt: int) -> float:
        delay = min(_MAX_BACKOFF_S, self.cfg.backoff_seconds * 2**attempt)
        return delay * (1.0 + 0.5 * random.random())


def cache_key(path: str, params: Mapping[str, Any]) -> str:
    """`/search/movie?include_adult=false&language=en-US&query=...`: sorted, and never holding credentials."""
    clean = {k: v for k, v in params.items() if k != "api_key"}
    return f"{path}?{urlencode(sorted((k, str(v)) for k, v in clean.items()))}"


def parse_details(data: Mapping[str, Any]) -> MovieDetails:
    """Pick the fields the recommender uses out of a `/movie/{id}?append_to_response=keywords,credits` body."""
    credits = data.get("credits") or {}
    directors = [c["name"] for c in credits.get("crew") or [] if c.get("job") == "Director" and c.get("name")]
    cast = sorted((c for c in credits.get("cast") or [] if c.get("name")), key=lambda c: c.get("order", 1 << 30))
    keywords = (data.get("keywords") or {}).get("keywords") or (data.get("keywords") or {}).get("results") or []
    return MovieDetails(
        tmdb_id=int(data["id"]),
        title=data.get("title") or None,
        release_date=data.get("release_date") or None,
        overview=(data.get("overview") or "").strip() or None,
        genres=[g["name"] for g in data.get("genres") or [] if g.get("name")],
        keywords=[k["name"] for k in keywords if k.get("name")],
        director=", ".join(dict.fromkeys(directors)) or None,
        cast=[c["name"] for c in cast[:_TOP_CAST]],
        imdb_id=data.get("imdb_id") or None,
    )


def _year(result: Mapping[str, Any]) -> int | None:
    date = result.get("release_date") or ""
    return int(date[:4]) if len(date) >= 4 and date[:4].isdigit() else None
