"""A stand-in for the TMDB v3 API on 127.0.0.1: search, details with keywords/credits, auth and scripted failures."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "stub-v3-key-0123456789"
READ_TOKEN = "stub-v4-token-abcdef"


def movie(tmdb_id: int, title: str, date: str, **extra: Any) -> dict[str, Any]:
    """A details body as TMDB returns it for `append_to_response=keywords,credits`."""
    body = {
        "id": tmdb_id,
        "title": title,
        "original_title": extra.pop("original_title", title),
        "release_date": date,
        "overview": f"Overview of {title}.",
        "genres": [{"id": 18, "name": "Drama"}],
        "imdb_id": f"tt{tmdb_id:07d}",
        "keywords": {"keywords": [{"id": 1, "name": "heist"}, {"id": 2, "name": "twist ending"}]},
        "credits": {
            "cast": [{"name": f"Actor {i}", "order": i} for i in reversed(range(7))],
            "crew": [{"name": "Some Writer", "job": "Screenplay"}, {"name": f"Director of {title}", "job": "Director"}],
        },
    }
    body.update(extra)
    return body


@dataclass
class Request:
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class TMDBStub:
    """Serves `movies` (id -> details body). `failures[path]` is a queue of (status, headers) answered first."""

    movies: dict[int, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, deque[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, path: str, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        self.failures.setdefault(path, deque()).extend([(status, headers or {})] * times)

    def answer(self, path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.requests.append(Request(path, params, headers, time.monotonic()))
            queued = self.failures.get(path)
            if queued:
                status, extra = queued.popleft()
                return status, extra, {"status_message": "scripted failure"}
        authorised = params.get("api_key") == API_KEY or headers.get("authorization") == f"Bearer {READ_TOKEN}"
        if not authorised:
            return 401, {}, {"status_code": 7, "status_message": "Invalid API key"}
        if path == "/3/search/movie":
            return 200, {}, {"page": 1, "results": self._search(params), "total_results": 0}
        if path.startswith("/3/movie/"):
            found = self.movies.get(int(path.rsplit("/", 1)[1]))
            if found is None:
                return 404, {}, {"status_code": 34, "status_message": "not found"}
            return 200, {}, found
        return 404, {}, {"status_message": "unknown path"}

    def _search(self, params: dict[str, str]) -> list[dict[str, Any]]:
        query, year = params.get("query", "").casefold(), params.get("year")
        hits = []
        for m in self.movies.values():
            if query not in m["title"].casefold() and query not in m["original_title"].casefold():
                continue
            if year and not m["release_date"].startswith(year):
                continue
            hits.append({k: m[k] for k in ("id", "title", "original_title", "release_date", "overview")})
        return hits


class StubServer:
    """Runs a :class:`TMDBStub` on a free port; `base` is the URL to give the client (ends in `/3`)."""

    def __init__(self, stub: TMDBStub) -> None:
        self.stub = stub
        handler = _handler(stub)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}/3"

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(stub: TMDBStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, body = stub.answer(url.path, params, headers)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return Handler
