"""The TMDB client against the local stand-in server: parsing, fallbacks, errors, retries, rate limit, cache."""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import diskcache
import pytest

from e2ep.errors import ConfigError, DataError
from semantic.metadata.config import TMDBConfig
from semantic.metadata.throttle import TokenBucket, retry_after_seconds
from semantic.metadata.titles import clean_title
from semantic.metadata.tmdb import Credentials, TMDBClient, cache_key
from tests.tmdb_stub import API_KEY, READ_TOKEN, StubServer, TMDBStub, movie

SEARCH, SUSPECTS = "/3/search/movie", "/3/movie/629"


@pytest.fixture
def stub():
    s = TMDBStub()
    for m in (
        movie(
            629,
            "The Usual Suspects",
            "1995-07-19",
            genres=[{"id": 80, "name": "Crime"}, {"id": 53, "name": "Thriller"}],
        ),
        movie(902, "The City of Lost Children", "1995-05-16", original_title="La Cité des enfants perdus"),
        movie(807, "Se7en", "1995-09-22"),
        movie(949, "Heat", "1996-01-10"),
        *(movie(1000 + i, f"Filler {i}", "2000-01-01") for i in range(12)),
    ):
        s.movies[m["id"]] = m
    with StubServer(s) as server:
        s.base = server.base
        yield s


def make_client(stub, tmp_path, credentials=None, **settings) -> TMDBClient:
    settings = {"requests_per_second": 50.0, "backoff_seconds": 0.02, "max_retries": 3, **settings}
    cfg = TMDBConfig(api_base=stub.base, cache_dir=str(tmp_path / "tmdb"), **settings)
    return TMDBClient(cfg, credentials or Credentials(api_key=API_KEY))


def test_lookup_parses_details_keywords_director_and_top_cast(stub, tmp_path):
    with make_client(stub, tmp_path) as client:
        found = client.lookup("Usual Suspects, The (1995)")
    assert found is not None and found.tmdb_id == 629
    assert found.title == "The Usual Suspects" and found.release_date == "1995-07-19"
    assert found.overview == "Overview of The Usual Suspects."
    assert found.genres == ["Crime", "Thriller"]
    assert found.keywords == ["heist", "twist ending"]
    assert found.director == "Director of The Usual Suspects"
    assert found.cast == [f"Actor {i}" for i in range(5)]  # ordered by billing, top five
    search, details = stub.requests
    assert search.path == SEARCH and search.params["query"] == "The Usual Suspects" and search.params["year"] == "1995"
    assert search.params["api_key"] == API_KEY and search.params["language"] == "en-US"
    assert details.path == SUSPECTS and details.params["append_to_response"] == "keywords,credits"


def test_read_token_goes_in_the_authorization_header_only(stub, tmp_path):
    with make_client(stub, tmp_path, Credentials(read_token=READ_TOKEN)) as client:
        assert client.lookup("Usual Suspects, The (1995)").tmdb_id == 629
    assert all(r.headers["authorization"] == f"Bearer {READ_TOKEN}" for r in stub.requests)
    assert all("api_key" not in r.params for r in stub.requests)


def test_no_match_tries_without_year_then_gives_up(stub, tmp_path):
    with make_client(stub, tmp_path) as client:
        assert client.lookup("Nonexistent Picture, A (1990)") is None
    assert [(r.params["query"], r.params.get("year")) for r in stub.requests] == [
        ("A Nonexistent Picture", "1990"),
        ("A Nonexistent Picture", None),
    ]


def test_alternate_title_and_neighbouring_year_are_tried(stub, tmp_path):
    with make_client(stub, tmp_path) as client:
        assert client.lookup("Seven (Se7en) (1995)").tmdb_id == 807  # only the alternate title matches
        assert client.lookup("Heat (1995)").tmdb_id == 949  # released 1996: found without the year, within +-1
        assert client.search_movie("Heat", 1990) is None  # too far from the year
        assert client.search_movie("unknown", None) is None  # no year: only exact title matches count


def test_missing_credentials_fail_before_any_request(stub, tmp_path, monkeypatch):
    monkeypatch.delenv("TMDB_API_KEY", raising=False)
    monkeypatch.delenv("TMDB_READ_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="TMDB_READ_TOKEN"):
        TMDBClient(TMDBConfig(api_base=stub.base, cache_dir=str(tmp_path)))
    assert stub.requests == []
    monkeypatch.setenv("TMDB_API_KEY", API_KEY)
    assert Credentials.from_env().api_key == API_KEY
    assert API_KEY not in repr(Credentials.from_env())


def test_bad_key_is_a_config_error_at_once(stub, tmp_path):
    with make_client(stub, tmp_path, Credentials(api_key="wrong-key")) as client:
        with pytest.raises(ConfigError, match="401") as err:
            client.lookup("Usual Suspects, The (1995)")
    assert "wrong-key" not in str(err.value)
    assert len(stub.requests) == 1


def test_404_details_mean_no_details_not_failure(stub, tmp_path):
    stub.fail(SUSPECTS, 404)
    with make_client(stub, tmp_path) as client:
        assert client.lookup("Usual Suspects, The (1995)") is None
        assert client.movie_details(424242) is None
        assert client.lookup("City of Lost Children, The (Cité des enfants perdus, La) (1995)").tmdb_id == 902


def test_429_waits_for_retry_after_then_succeeds(stub, tmp_path):
    stub.fail(SEARCH, 429, headers={"Retry-After": "1"})
    with make_client(stub, tmp_path) as client:
        assert client.lookup("Usual Suspects, The (1995)").tmdb_id == 629
        assert client.stats.retries == 1 and client.stats.requests == 3
    first, second = stub.requests[:2]
    assert first.path == second.path == SEARCH
    assert second.at - first.at >= 1.0


def test_500_is_retried_with_backoff_then_succeeds(stub, tmp_path):
    stub.fail(SUSPECTS, 500, times=2)
    stub.fail(SEARCH, 503)
    with make_client(stub, tmp_path) as client:
        assert client.lookup("Usual Suspects, The (1995)").tmdb_id == 629
        assert client.stats.retries == 3 and client.stats.requests == 5


def test_persistent_5xx_and_unreachable_server_raise_data_error(stub, tmp_path):
    stub.fail(SUSPECTS, 502, times=10)
    with make_client(stub, tmp_path, max_retries=2) as client:
        with pytest.raises(DataError, match="after 2 retries"):
            client.movie_details(629)
        assert client.stats.requests == 3
    cfg = TMDBConfig(
        api_base="http://127.0.0.1:9/3", cache_dir=str(tmp_path / "c2"), max_retries=1, backoff_seconds=0.01
    )
    with TMDBClient(cfg, Credentials(api_key=API_KEY)) as client, pytest.raises(DataError) as err:
        client.movie_details(1)
    assert API_KEY not in str(err.value)


def test_rate_limit_is_respected_across_threads(stub, tmp_path):
    rps, n = 20.0, 12
    with make_client(stub, tmp_path, requests_per_second=rps) as client:
        start = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            found = list(pool.map(client.movie_details, range(1000, 1000 + n)))
        elapsed = time.monotonic() - start
    assert all(f is not None for f in found)
    assert elapsed >= (n - 1) / rps
    times = sorted(r.at for r in stub.requests)
    assert times[-1] - times[0] >= (n - 1) / rps - 0.02  # server-side view, allowing for network jitter


def test_token_bucket_spacing():
    bucket = TokenBucket(rate=50.0)
    start = time.monotonic()
    for _ in range(6):
        bucket.acquire()
    assert time.monotonic() - start >= 5 / 50.0


def test_rerun_is_served_from_cache_and_keys_hold_no_credentials(stub, tmp_path, caplog):
    titles = ["Usual Suspects, The (1995)", "Seven (Se7en) (1995)", "Nothing Like It (1990)"]
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="httpx")  # other libraries (litellm) may have silenced it
    with make_client(stub, tmp_path) as client:
        first = [client.lookup(t) for t in titles]
        client.movie_details(31337)  # a 404 is cached too
    sent = len(stub.requests)
    with make_client(stub, tmp_path) as client:
        again = [client.lookup(t) for t in titles]
        assert client.movie_details(31337) is None
        assert client.stats.requests == 0 and client.stats.cache_hits > 0
    assert len(stub.requests) == sent and again == first
    leaked = [line for line in caplog.text.splitlines() if API_KEY in line]
    # Request lines were logged (so the check is real) and none holds the key, whoever masked it.
    assert "HTTP Request" in caplog.text and not leaked, leaked[:3]
    with diskcache.Cache(str(tmp_path / "tmdb")) as cache:
        keys = list(cache.iterkeys())
        assert keys and all(API_KEY not in k and "api_key" not in k for k in keys)
        assert all(API_KEY not in json.dumps(cache[k]) for k in keys)
    assert cache_key("/x", {"b": 1, "a": "q", "api_key": API_KEY}) == "/x?a=q&b=1"


@pytest.mark.parametrize(
    ("raw", "primary", "alternates", "year"),
    [
        ("Usual Suspects, The (1995)", "The Usual Suspects", (), 1995),
        (
            "City of Lost Children, The (Cité des enfants perdus, La) (1995)",
            "The City of Lost Children",
            ("La Cité des enfants perdus",),
            1995,
        ),
        ("Seven (Se7en) (1995)", "Seven", ("Se7en",), 1995),
        (
            "Professional, The (a.k.a. Leon: The Professional) (1994)",
            "The Professional",
            ("Leon: The Professional",),
            1994,
        ),
        ("Postino, Il (1994)", "Il Postino", (), 1994),
        ("Enfer, L' (1994)", "L'Enfer", (), 1994),
        ("Godfather: Part II, The (1974)", "The Godfather: Part II", (), 1974),
        ("Good, The Bad and The Ugly, The (1966)", "The Good, The Bad and The Ugly", (), 1966),
        (
            "Land Before Time III: The Time of the Great Land Rush (1995) (V)",
            "Land Before Time III: The Time of the Great Land Rush",
            (),
            1995,
        ),
        ("Toy Story (1995)", "Toy Story", (), 1995),
        ("unknown", "unknown", (), None),
    ],
)
def test_clean_title(raw, primary, alternates, year):
    cleaned = clean_title(raw)
    assert (cleaned.primary, cleaned.alternates, cleaned.year) == (primary, alternates, year)


def test_token_bucket_pause_holds_then_keeps_spacing():
    bucket = TokenBucket(rate=20.0)
    bucket.acquire()
    start = time.monotonic()
    bucket.pause(0.3)
    with ThreadPoolExecutor(4) as pool:
        stamps = sorted(pool.map(lambda _: (bucket.acquire(), time.monotonic())[1], range(4)))
    # The k-th release comes no sooner than k intervals after the pause ends: no burst of queued callers.
    assert all(stamp - start >= 0.3 + k / 20.0 - 0.005 for k, stamp in enumerate(stamps))


def test_retry_after_parsing():
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("-5") == 0.0 and retry_after_seconds("99999") == 300.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
