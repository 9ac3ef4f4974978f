"""Parsing MovieLens 100K/1M and generic CSV files into a Dataset, errors naming file and line, and persistence."""

from __future__ import annotations

import gzip
import logging
import os
import time
from pathlib import Path

import polars as pl
import pytest

from data import Dataset, load_dataset, read_dataset, save_dataset
from data.config import DatasetConfig
from e2ep.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("E2EP_DATA_DIR") or REPO.parent / "shared" / "data")
SEED_TRAIN = SHARED / "seed_repo" / "ml-1m" / "seed_u1base_train_no_timestamps.csv.gz"
needs_ml100k = pytest.mark.skipif(not (SHARED / "ml-100k" / "u.data").is_file(), reason="real ML-100K not available")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the user's env or cache, and never download (an empty cache plus an explicit data dir)."""
    monkeypatch.delenv("E2EP_DATA_DIR", raising=False)
    monkeypatch.setenv("E2EP_CACHE_DIR", str(tmp_path / "no-cache"))


def write_ml1m(root: Path, ratings: str = "1::10::5::978300760\n2::10::3::978300761\n1::20::4::978300762\n") -> Path:
    folder = root / "ml-1m"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_bytes(ratings.encode("latin-1"))
    movies = "10::Misérables, Les (1995)::Drama|Musical\n20::Heat (1995)::Action\n30::Never Rated (1990)::Comedy\n"
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    (folder / "users.dat").write_bytes(b"1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


def load_ml1m(root: Path) -> Dataset:
    return load_dataset(DatasetConfig(name="ml-1m", data_dir=str(root)))


def load_csv(ratings: Path, items: Path | None = None) -> Dataset:
    return load_dataset(DatasetConfig(name="csv", ratings_path=str(ratings), items_path=items and str(items)))


@needs_ml100k
def test_real_ml100k_counts_and_metadata() -> None:
    ds = load_dataset(DatasetConfig(name="ml-100k", data_dir=str(SHARED)))
    assert (ds.ratings.height, ds.n_users, ds.n_items) == (100_000, 943, 1682)
    assert ds.ratings.schema == pl.Schema(
        {"user_idx": pl.Int32, "item_idx": pl.Int32, "rating": pl.Float32, "timestamp": pl.Int64}
    )
    assert sorted(ds.ratings["rating"].unique().to_list()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    # Indices follow sorted original ids, which are 1..N in ML-100K.
    assert (ds.users["user_id"] - ds.users["user_idx"]).unique().to_list() == [1]
    assert (ds.items["item_id"] - ds.items["item_idx"]).unique().to_list() == [1]
    toy_story = ds.items.row(0, named=True)
    assert (toy_story["title"], toy_story["year"], toy_story["genres"]) == (
        "Toy Story (1995)",
        1995,
        "Animation|Children's|Comedy",
    )
    assert ds.users.filter(pl.col("user_id") == 1).select("age", "gender", "occupation").row(0) == (
        24,
        "M",
        "technician",
    )
    assert ds.source_dir == str(SHARED / "ml-100k")


@needs_ml100k
def test_real_ml1m_folder_without_ratings_names_the_file() -> None:
    if (SHARED / "ml-1m" / "ratings.dat").exists():
        pytest.skip("this copy of ML-1M is complete")
    with pytest.raises(DataError, match=r"ml-1m lacks ratings\.dat"):
        load_dataset(DatasetConfig(name="ml-1m", data_dir=str(SHARED)))


def test_ml1m_double_colon_latin1(tmp_path: Path) -> None:
    ds = load_ml1m(write_ml1m(tmp_path).parent)
    assert (ds.ratings.height, ds.n_users, ds.n_items) == (3, 2, 3)
    first = ds.items.row(0, named=True)
    assert (first["item_id"], first["title"], first["year"], first["genres"]) == (
        10,
        "Misérables, Les (1995)",
        1995,
        "Drama|Musical",
    )
    assert ds.items["item_id"].to_list() == [10, 20, 30]  # the unrated movie 30 still gets an index
    assert ds.users.select("gender", "age", "occupation").rows() == [
        ("F", 1, "K-12 student"),
        ("M", 56, "self-employed"),
    ]
    assert ds.ratings.rows() == [(0, 0, 5.0, 978300760), (0, 1, 4.0, 978300762), (1, 0, 3.0, 978300761)]


def test_csv_with_timestamp_and_items(tmp_path: Path) -> None:
    ratings = tmp_path / "r.csv"
    ratings.write_text("user_id,item_id,rating,timestamp\n5,300,4.5,10\n2,100,3,11\n5,100,1,12\n")
    items = tmp_path / "items.csv"
    items.write_text('item_id,title,genres,year,overview\n100,"Heat, The",Action,1995,x\n300,Z,,,y\n400,Unrated,,,z\n')
    ds = load_csv(ratings, items)
    assert ds.users["user_id"].to_list() == [2, 5]
    assert ds.items.select("item_id", "title", "year", "genres").rows() == [
        (100, "Heat, The", 1995, "Action"),
        (300, "Z", None, None),
        (400, "Unrated", None, None),
    ]
    assert ds.ratings.rows() == [(0, 0, 3.0, 11), (1, 0, 1.0, 12), (1, 1, 4.5, 10)]
    assert ds.source_dir is None and ds.name == "csv"


def test_csv_gz_movie_id_alias_and_string_ids(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.gz"
    path.write_bytes(gzip.compress(b"user_id,movie_id,rating\nbob,7,4\nalice,7,2\nbob,12,5\n"))
    ds = load_csv(path)
    assert ds.users["user_id"].dtype == pl.String and ds.users["user_id"].to_list() == ["alice", "bob"]
    assert ds.items["item_id"].dtype == pl.Int64 and ds.items["item_id"].to_list() == [7, 12]
    assert ds.ratings["timestamp"].null_count() == 3
    assert ds.items["title"].null_count() == 2


@pytest.mark.skipif(not SEED_TRAIN.is_file(), reason="seed paper's ML-1M training split not available")
def test_seed_800k_csv_loads(caplog: pytest.LogCaptureFixture) -> None:
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        ds = load_csv(SEED_TRAIN)
    elapsed = time.perf_counter() - start
    print(f"seed ML-1M training split (800,168 lines) loaded in {elapsed:.2f}s")
    # The file repeats 4 lines exactly (e.g. line 68362 = line 68361); they are dropped with a warning.
    assert ds.ratings.height == 800_168 - 4
    assert "ignoring 4 line(s)" in caplog.text and "line 68362" in caplog.text
    assert ds.n_users == 6040
    assert ds.ratings.select(pl.struct("user_idx", "item_idx").n_unique()).item() == ds.ratings.height


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("1\t1\t5\t1\n2\t1\t4\n", r"u\.data line 2: expected 4 tab-separated fields, got 3"),
        ("1\t1\t5\t1\n2\t1\t4\t1\t9\n", r"u\.data line 2: expected 4 tab-separated fields, got 5"),
        ("1\t1\t5\t1\n\n2\t1\tfive\t1\n", r"u\.data line 3: rating 'five' is not a number"),
        ("1\t1\t5\t1\n2\tx\t4\t1\n", r"u\.data line 2: item_id 'x' is not an integer"),
        ("1\t1\t5\t1\n2\t\t4\t1\n", r"u\.data line 2: missing item_id"),
        (
            "1\t1\t5\t1\n\n2\t2\t4\t1\n1\t1\t3\t2\n",
            r"u\.data line 4: duplicate rating .*user_id 1, item_id 1 .*line 1\)",
        ),
    ],
)
def test_malformed_ml100k_ratings_name_file_and_line(tmp_path: Path, content: str, expected: str) -> None:
    from data.movielens import read_ml100k_ratings

    path = tmp_path / "u.data"
    path.write_text(content)
    with pytest.raises(DataError, match=expected):
        read_ml100k_ratings(path)


def test_malformed_ml1m_line(tmp_path: Path) -> None:
    root = write_ml1m(tmp_path, ratings="1::10::5::978300760\n2::10::3\n").parent
    with pytest.raises(DataError, match=r"ratings\.dat line 2: expected 4 '::'-separated fields, got 3"):
        load_ml1m(root)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("user_id,item_id,rating\n1,2,4\n1,3,\n", r"r\.csv line 3: missing rating"),
        ("user_id,item_id,rating\n1,2,4\n1,3,4,9\n", r"r\.csv line 3: expected 3 comma-separated fields, got 4"),
        ("user_id,item_id,rating,timestamp\n1,2,4,1\n1,3,4,soon\n", r"r\.csv line 3: timestamp 'soon' is not an"),
        ("user_id,item_id,rating\n1,2,4\n1,02,3\n", r"r\.csv line 3: duplicate rating .*first on line 2"),
        ("person,item_id,rating\n1,2,4\n", r"r\.csv: header lacks user_id column\(s\) \(read as comma-sep"),
        ("user_id,thing,rating\n1,2,4\n", r"r\.csv: header lacks item_id column"),
        ("user_id\titem_id\trating\n1\t2\t4\n1\t3\n", r"r\.csv line 3: expected 3 tab-separated fields, got 2"),
        ("user_id,item_id,rating\n1,2,4\n1,3,7\n", r"r\.csv line 3: rating 7 is outside the rating scale 0\.5-5"),
        ("user_id,item_id,rating\n", r"r\.csv: no ratings"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=expected):
        load_csv(path)


def test_exact_repeated_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating\n1,2,4\n1,2,4\n1,3,5\n")
    assert load_csv(path).ratings.height == 2


def test_missing_ratings_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_csv(tmp_path / "absent.csv")
    cfg = DatasetConfig(name="csv", ratings_path=str(tmp_path / "absent.csv"))
    with pytest.raises(DataError, match="file not found"):
        load_dataset(cfg)


def test_save_and_read_round_trip(tmp_path: Path) -> None:
    ds = load_ml1m(write_ml1m(tmp_path / "src").parent)
    target = tmp_path / "out" / "dataset"
    save_dataset(ds, target)
    save_dataset(ds, target)  # overwriting an existing copy works too
    back = read_dataset(target)
    assert (back.name, back.source_dir) == (ds.name, ds.source_dir)
    for table in ("ratings", "users", "items"):
        assert getattr(back, table).equals(getattr(ds, table)), table
    assert sorted(p.name for p in target.parent.iterdir()) == ["dataset"]  # no temp folders left


def test_read_dataset_of_empty_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no saved dataset"):
        read_dataset(tmp_path)
