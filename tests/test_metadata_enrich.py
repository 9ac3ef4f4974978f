"""enrich_items over every source: MovieLens only, local CSV files (synthetic and the real derived ones), TMDB stub."""

from __future__ import annotations

import gzip

import polars as pl
import pytest
from pydantic import ValidationError

from e2ep.errors import ConfigError, DataError
from semantic.metadata import OUTPUT_SCHEMA, MetadataConfig, TMDBConfig, enrich_items, parse_list
from semantic.metadata.tmdb import Credentials, TMDBClient
from tests.conftest import shared_data_dir
from tests.tmdb_stub import API_KEY, StubServer, TMDBStub, movie


def ml_items() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_idx": [0, 1, 2, 3],
            "item_id": [1, 2, 5, 9],
            "title": ["Usual Suspects, The (1995)", "Seven (Se7en) (1995)", "Nowhere Film (1990)", "unknown"],
            "year": [1995, 1995, 1990, None],
            "genres": ["Crime|Thriller", "Crime", "Drama", None],
        },
        schema_overrides={"item_idx": pl.Int32, "year": pl.Int32},
    )


def check_shape(frame: pl.DataFrame, n: int) -> None:
    assert frame.schema == pl.Schema(OUTPUT_SCHEMA)
    assert frame["item_idx"].to_list() == list(range(n))


def test_movielens_source_keeps_title_and_genres_only():
    result = enrich_items(ml_items(), MetadataConfig(source="movielens"))
    check_shape(result.items, 4)
    assert result.items["title"].to_list() == ["The Usual Suspects", "Seven", "Nowhere Film", "unknown"]
    assert result.items["genres"].to_list() == [["Crime", "Thriller"], ["Crime"], ["Drama"], []]
    assert result.items["overview"].null_count() == 4 and set(result.items["metadata_source"]) == {"movielens"}
    assert result.report.items == 4 and result.report.matched == 0 and result.report.per_source == {"movielens": 4}


def write_csv(path, text: str):
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return str(path)


def test_local_source_parses_list_formats_and_falls_back(tmp_path):
    path = write_csv(
        tmp_path / "meta.csv.gz",
        "movie_id,tmdb_id,tmdb_title,overview,omdb_plot,tmdb_genres,keywords,director,actors\n"
        "1,629,The Usual Suspects,Five crooks.,,Crime|Thriller,heist|twist ending,"
        'Bryan Singer,"Gabriel Byrne, Kevin Spacey"\n'
        '2,807,Se7en,,Two detectives hunt.,"[{""id"": 80, ""name"": ""Crime""}]","[""serial killer""]",'
        "\"['David Fincher']\",\"['Brad Pitt', 'Morgan Freeman']\"\n"
        "7,1,Not In Dataset,x,,,,,\n"
        "5,,,,,,,,\n",
    )
    result = enrich_items(ml_items(), MetadataConfig(source="local", local_path=path))
    check_shape(result.items, 4)
    rows = result.items.rows(named=True)
    assert rows[0] == {
        "item_idx": 0, "title": "The Usual Suspects", "year": 1995, "genres": ["Crime", "Thriller"],
        "overview": "Five crooks.", "keywords": ["heist", "twist ending"], "director": "Bryan Singer",
        "cast": ["Gabriel Byrne", "Kevin Spacey"], "tmdb_id": 629, "metadata_source": "local",
    }  # fmt: skip
    assert rows[1]["overview"] == "Two detectives hunt."  # omdb_plot fills a missing overview
    assert (rows[1]["genres"], rows[1]["keywords"], rows[1]["director"]) == (
        ["Crime"],
        ["serial killer"],
        "David Fincher",
    )
    assert rows[1]["cast"] == ["Brad Pitt", "Morgan Freeman"]
    assert rows[2]["metadata_source"] == rows[3]["metadata_source"] == "movielens"  # empty row, absent row
    assert rows[2]["title"] == "Nowhere Film" and rows[2]["genres"] == ["Drama"] and rows[2]["overview"] is None
    r = result.report
    counts = (r.matched, r.with_tmdb_id, r.with_overview, r.with_keywords, r.with_director, r.with_cast)
    assert counts == (2, 2, 2, 2, 2, 2)
    assert r.per_source == {"local": 2, "movielens": 2}


def test_local_source_accepts_item_id_key_and_string_ids(tmp_path):
    path = write_csv(tmp_path / "m.csv", "item_id,overview\n1,A film.\n")
    items = ml_items().with_columns(pl.col("item_id").cast(pl.String))
    result = enrich_items(items, MetadataConfig(source="local", local_path=path))
    assert result.items["overview"].to_list() == ["A film.", None, None, None]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("A|B | C", ["A", "B", "C"]),
        ("Tom Hanks, Tim Allen", ["Tom Hanks", "Tim Allen"]),
        ('["x", "y"]', ["x", "y"]),
        ('[{"id": 1, "name": "Drama"}, {"id": 2, "name": "War"}]', ["Drama", "War"]),
        ("['a', 'b']", ["a", "b"]),
        ("new year's eve", ["new year's eve"]),
        ("", []),
        ("[]", []),
        (None, []),
        ("[unclosed, list", ["[unclosed", "list"]),
    ],
)
def test_parse_list(value, expected):
    assert parse_list(value) == expected


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "does not exist"),
        ("nokey.csv", "title,overview\nA,b\n", "item id column"),
        ("nometa.csv", "movie_id,foo\n1,b\n", "no metadata columns"),
        ("dupes.csv", "movie_id,overview\n1,a\n1,b\n", "more than once"),
        ("badid.csv", "movie_id,tmdb_id,overview\n1,abc,a\n", "tmdb_id must be an integer"),
        ("ragged.csv", 'movie_id,overview\n1,"never closed\n2,b,c,d,e\n', "ragged.csv"),
    ],
)
def test_malformed_local_file_is_a_data_error_naming_it(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        enrich_items(ml_items(), MetadataConfig(source="local", local_path=str(path)))
    assert name in str(err.value)


def test_config_validation():
    with pytest.raises(ValidationError, match="local_path"):
        MetadataConfig(source="local")
    with pytest.raises(ValidationError):
        MetadataConfig(source="tmdb", tmdb={"rate": 3})
    assert MetadataConfig(source="tmdb").tmdb.requests_per_second > 0


@pytest.fixture
def stub():
    s = TMDBStub()
    for m in (movie(629, "The Usual Suspects", "1995-07-19"), movie(807, "Se7en", "1995-09-22", genres=[])):
        s.movies[m["id"]] = m
    with StubServer(s) as server:
        s.base = server.base
        yield s


def test_tmdb_source_enriches_concurrently_and_reruns_from_cache(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("TMDB_API_KEY", API_KEY)
    monkeypatch.delenv("TMDB_READ_TOKEN", raising=False)
    cfg = MetadataConfig(source="tmdb", tmdb=TMDBConfig(api_base=stub.base, cache_dir=str(tmp_path), workers=3))
    result = enrich_items(ml_items(), cfg)
    check_shape(result.items, 4)
    assert result.items["tmdb_id"].to_list() == [629, 807, None, None]
    assert result.items["metadata_source"].to_list() == ["tmdb", "tmdb", "movielens", "movielens"]
    assert result.items["title"].to_list() == ["The Usual Suspects", "Se7en", "Nowhere Film", "unknown"]
    assert result.items["genres"].to_list()[1] == ["Crime"]  # TMDB has no genres: MovieLens' are kept
    assert result.items["cast"].to_list()[0] == [f"Actor {i}" for i in range(5)]
    assert result.report.matched == 2 and result.report.requests == len(stub.requests) > 0
    sent = len(stub.requests)
    again = enrich_items(ml_items(), cfg)
    assert len(stub.requests) == sent and again.report.requests == 0
    assert again.items.equals(result.items)


def test_tmdb_source_without_credentials_fails_before_any_request(stub, tmp_path, monkeypatch):
    monkeypatch.delenv("TMDB_API_KEY", raising=False)
    monkeypatch.delenv("TMDB_READ_TOKEN", raising=False)
    cfg = MetadataConfig(source="tmdb", tmdb=TMDBConfig(api_base=stub.base, cache_dir=str(tmp_path)))
    with pytest.raises(ConfigError):
        enrich_items(ml_items(), cfg)
    assert stub.requests == []
    with TMDBClient(cfg.tmdb, Credentials(api_key="bad")) as client, pytest.raises(ConfigError, match="401"):
        enrich_items(ml_items(), cfg, client=client)


def _real_file(name: str):
    data = shared_data_dir()
    path = data / "tmdb" / name if data else None
    if path is None or not path.is_file():
        pytest.skip(f"development data tmdb/{name} not available (set E2EP_DATA_DIR)")
    return data, path


def test_local_source_on_real_ml100k_file():
    from data import load_dataset
    from data.config import DatasetConfig

    data, path = _real_file("ml-100k_items_tmdb.csv.gz")
    items = load_dataset(DatasetConfig(name="ml-100k", data_dir=str(data))).items
    result = enrich_items(items, MetadataConfig(source="local", local_path=str(path)))
    check_shape(result.items, 1682)
    r = result.report
    print(r.summary())
    assert r.items == 1682 and r.with_tmdb_id == 1668  # ids as documented in SOURCES.md
    assert r.with_overview >= 1603  # 1603 TMDB overviews, more with the OMDb plot as fallback
    assert r.with_director == 1652 and r.with_keywords == 494
    file_overviews = pl.read_csv(path, infer_schema_length=0)["overview"].is_not_null().sum()
    assert file_overviews == 1603


def test_local_source_on_real_ml1m_file():
    _, path = _real_file("ml-1m_items_tmdb.csv.gz")
    raw = pl.read_csv(path, infer_schema_length=0)
    items = raw.select(
        pl.int_range(pl.len(), dtype=pl.Int32).alias("item_idx"),
        pl.col("movie_id").cast(pl.Int64).alias("item_id"),
        pl.col("ml_title").alias("title"),
        pl.lit(None, pl.Int32).alias("year"),
        pl.lit(None, pl.String).alias("genres"),
    )
    r = enrich_items(items, MetadataConfig(source="local", local_path=str(path))).report
    print(r.summary())
    assert (r.items, r.with_tmdb_id, r.with_director, r.with_keywords) == (3883, 3863, 3869, 1080)
    assert r.with_overview >= raw["overview"].is_not_null().sum() == 3671
