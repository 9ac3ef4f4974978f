"""Official and seeded random folds, per-user validation slices, and fold persistence."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data import Dataset, Fold, build_dataset, load_dataset, make_folds, read_fold, save_fold
from data.config import DatasetConfig, SplitConfig
from data.parsing import RawTables
from e2ep.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("E2EP_DATA_DIR") or REPO.parent / "shared" / "data")
needs_ml100k = pytest.mark.skipif(not (SHARED / "ml-100k" / "u1.base").is_file(), reason="real ML-100K not available")
KEY = ["user_idx", "item_idx"]


@pytest.fixture(scope="module")
def synthetic() -> Dataset:
    """80 users with 1..80 ratings each over 120 items, so small and large users are both covered."""
    rng = np.random.default_rng(7)
    rows = [
        (user, int(item), float(rng.integers(1, 6)), user * 1000 + k)
        for user in range(1, 81)
        for k, item in enumerate(rng.choice(120, size=user, replace=False))
    ]
    ratings = pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row")
    return build_dataset("synthetic", RawTables(ratings, None, None), source_dir=None)


def test_random_folds_partition_ratings(synthetic: Dataset) -> None:
    folds = make_folds(synthetic, SplitConfig(n_folds=5, seed=1))
    tests = pl.concat([f.test.with_columns(fold=pl.lit(f.number)) for f in folds])
    assert tests.height == synthetic.ratings.height
    assert tests.select(KEY).is_duplicated().sum() == 0  # test sets are disjoint
    assert tests.drop("fold").sort(KEY).equals(synthetic.ratings)  # ... and cover every rating
    for fold in folds:
        assert fold.train.join(fold.test, on=KEY).is_empty()
        assert pl.concat([fold.train.drop("is_validation"), fold.test]).sort(KEY).equals(synthetic.ratings)


def test_random_folds_are_stratified_per_user(synthetic: Dataset) -> None:
    k = 5
    folds = make_folds(synthetic, SplitConfig(n_folds=k, seed=3))
    per_fold = pl.concat([f.test.group_by("user_idx").len().with_columns(fold=pl.lit(f.number)) for f in folds])
    counts = (
        synthetic.ratings.group_by("user_idx").len(name="total")
        .join(per_fold.pivot("fold", index="user_idx", values="len"), on="user_idx", how="left")
        .fill_null(0)
    )  # fmt: skip
    fold_columns = [str(f) for f in range(1, k + 1)]
    spread = counts.select(pl.max_horizontal(fold_columns) - pl.min_horizontal(fold_columns)).to_series()
    assert spread.max() <= 1  # every user's ratings are spread evenly over the folds
    big = counts.filter(pl.col("total") >= k)
    assert big.select(pl.min_horizontal(fold_columns)).to_series().min() >= 1  # test ratings in every fold
    for fold in folds:  # ... and training ratings in every fold
        assert set(big["user_idx"]) <= set(fold.train["user_idx"])


def test_random_folds_depend_only_on_seed(synthetic: Dataset) -> None:
    first = make_folds(synthetic, SplitConfig(seed=11, official=False))
    again = make_folds(synthetic, SplitConfig(seed=11, official=False))
    other = make_folds(synthetic, SplitConfig(seed=12, official=False))
    assert all(a.train.equals(b.train) and a.test.equals(b.test) for a, b in zip(first, again, strict=True))
    assert not first[0].test.equals(other[0].test)
    assert not first[0].train["is_validation"].equals(other[0].train["is_validation"])


def test_fold_selection_returns_the_same_folds(synthetic: Dataset) -> None:
    everything = make_folds(synthetic, SplitConfig(seed=5))
    chosen = make_folds(synthetic, SplitConfig(seed=5, folds=[4, 2]))
    assert [f.number for f in chosen] == [2, 4]
    assert chosen[0].test.equals(everything[1].test) and chosen[1].train.equals(everything[3].train)
    with pytest.raises(ValueError, match="do not exist"):  # refused by the configuration, before any split
        SplitConfig(n_folds=3, folds=[4])


@pytest.mark.parametrize(("fraction", "minimum"), [(0.1, 5), (0.25, 2), (0.0, 5)])
def test_validation_slice_sizes(synthetic: Dataset, fraction: float, minimum: int) -> None:
    cfg = SplitConfig(n_folds=4, seed=2, validation_fraction=fraction, min_user_ratings_for_validation=minimum)
    for fold in make_folds(synthetic, cfg):
        sizes = fold.train.group_by("user_idx").agg(n=pl.len(), marked=pl.col("is_validation").sum())
        for n, marked in sizes.select("n", "marked").iter_rows():
            expected = 0 if n < minimum or fraction == 0 else max(1, int(np.floor(fraction * n + 0.5)))
            assert marked == expected, (n, marked)
        assert fold.train["is_validation"].dtype == pl.Boolean
        assert "is_validation" not in fold.test.columns


def test_validation_slice_differs_between_folds(synthetic: Dataset) -> None:
    folds = make_folds(synthetic, SplitConfig(seed=9))
    marked = [set(f.train.filter("is_validation").select(KEY).iter_rows()) for f in folds]
    assert marked[0] != marked[1]


def test_official_split_requires_five_folds(synthetic: Dataset) -> None:
    ml100k = Dataset("ml-100k", synthetic.ratings, synthetic.users, synthetic.items, source_dir=None)
    with pytest.raises(ConfigError, match="n_folds=5"):
        make_folds(ml100k, SplitConfig(n_folds=4))
    with pytest.raises(DataError, match="ml-100k folder"):
        make_folds(ml100k, SplitConfig())


def test_official_split_file_missing(synthetic: Dataset, tmp_path: Path) -> None:
    ml100k = Dataset("ml-100k", synthetic.ratings, synthetic.users, synthetic.items, source_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"u1\.base is missing.*official=false"):
        make_folds(ml100k, SplitConfig(folds=[1]))


@needs_ml100k
def test_official_ml100k_folds() -> None:
    ds = load_dataset(DatasetConfig(name="ml-100k", data_dir=str(SHARED)))
    start = time.perf_counter()
    folds = make_folds(ds, SplitConfig(official=True))
    print(f"5 official ML-100K folds in {time.perf_counter() - start:.2f}s")
    assert [(f.train.height, f.test.height) for f in folds] == [(80_000, 20_000)] * 5
    tests = pl.concat([f.test for f in folds])
    assert tests.select(KEY).is_duplicated().sum() == 0
    assert tests.sort(KEY).equals(ds.ratings)
    for fold in folds:
        assert pl.concat([fold.train.drop("is_validation"), fold.test]).sort(KEY).equals(ds.ratings)
    start = time.perf_counter()
    make_folds(ds, SplitConfig(official=False))
    print(f"5 random ML-100K folds in {time.perf_counter() - start:.2f}s")


def test_save_and_read_fold(synthetic: Dataset, tmp_path: Path) -> None:
    fold = make_folds(synthetic, SplitConfig(folds=[2]))[0]
    save_fold(fold, tmp_path / "fold-2")
    back = read_fold(tmp_path / "fold-2")
    assert isinstance(back, Fold) and back.number == 2
    assert back.train.equals(fold.train) and back.test.equals(fold.test)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold-2"]
    with pytest.raises(DataError, match="no saved fold"):
        read_fold(tmp_path / "absent")


def test_a_run_of_some_folds_shares_their_files_and_cache_keys_with_the_full_run(tmp_path: Path) -> None:
    from data.config import DatasetConfig, SplitConfig
    from tasks.data import prepare_dataset, split_dataset
    from tests.synthetic import write_planted_csv

    dataset = prepare_dataset(DatasetConfig(name="csv", ratings_path=str(write_planted_csv(tmp_path))))
    every = split_dataset(dataset, SplitConfig(n_folds=3))
    first_only = split_dataset(dataset, SplitConfig(n_folds=3, folds=[1]))
    assert first_only == [every[0]]


def test_small_folds_are_named_with_what_they_are_too_small_for(tmp_path: Path, synthetic: Dataset) -> None:
    from data.splits import small_fold_warnings

    (tmp_path / "r.csv").write_text(
        "user_id,item_id,rating\n"
        + "".join(f"{u},{i},{5 if (u + i) % 2 else 2}\n" for u in range(1, 4) for i in range(1, 7))
    )
    ds = load_dataset(DatasetConfig(name="csv", ratings_path=str(tmp_path / "r.csv")))
    fold = make_folds(ds, SplitConfig(n_folds=2, folds=[1]))[0]
    warnings = small_fold_warnings(fold, ds.n_items, max_k=10, positive_threshold=4.0, trains=True, pool_size=20)
    assert len(warnings) == 4 and all(w.startswith("fold 1: ") for w in warnings)
    assert "users have a relevant test rating" in warnings[0] and "largest cut-off k=10" in warnings[1]
    assert "rerank pool of 20" in warnings[2] and "validation slice" in warnings[3]
    assert small_fold_warnings(fold, 500, max_k=10, positive_threshold=4.0, trains=False)[1:] == []
    assert not small_fold_warnings(
        make_folds(synthetic, SplitConfig(n_folds=2, folds=[1]))[0],
        synthetic.n_items,
        max_k=10,
        positive_threshold=4.0,
        trains=True,
    )
