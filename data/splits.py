"""Cross-validation folds: GroupLens' official ML-100K u1-u5 files, or seeded per-user stratified random folds.

Every fold's training part carries a per-user validation slice (`is_validation`) for early stopping and model
selection, so test ratings are never used to tune anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from data.config import SplitConfig
from data.dataset import Dataset
from data.files import atomic_directory
from data.movielens import read_ml100k_ratings
from e2ep.errors import ConfigError, DataError

OFFICIAL_FOLDS = 5
_COLUMNS = ("user_idx", "item_idx", "rating", "timestamp")
_FOLD_STREAM = 0  # seed-sequence salt for fold assignment; validation slices use the 1-based fold number


@dataclass(frozen=True)
class Fold:
    """One fold. train: user_idx, item_idx, rating, timestamp, is_validation. test: the same, minus is_validation."""

    number: int
    train: pl.DataFrame
    test: pl.DataFrame


def make_folds(ds: Dataset, cfg: SplitConfig) -> list[Fold]:
    """The folds `cfg.folds` selects (all when None), deterministic given `cfg.seed`.

    `cfg.official` applies to ML-100K only; other datasets always get random folds.
    """
    official = cfg.official and ds.name == "ml-100k"
    if official and cfg.n_folds != OFFICIAL_FOLDS:
        raise ConfigError(f"the official ML-100K split has {OFFICIAL_FOLDS} folds; set n_folds=5 or official=false")
    numbers = cfg.folds or list(range(1, cfg.n_folds + 1))
    if too_big := [n for n in numbers if n > cfg.n_folds]:
        raise ConfigError(f"fold(s) {too_big} do not exist: there are {cfg.n_folds}")
    assignment = None if official else _assign_folds(ds, cfg)
    folds = []
    for number in sorted(set(numbers)):
        if assignment is None:
            train, test = _official_fold(ds, number)
        else:
            in_test = pl.Series(assignment == number - 1)
            train, test = ds.ratings.filter(~in_test), ds.ratings.filter(in_test)
        folds.append(Fold(number, _with_validation(train, cfg, number), test))
    return folds


def _official_fold(ds: Dataset, number: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`u<number>.base` / `.test` from the dataset's source folder, mapped to the dataset's indices."""
    if ds.source_dir is None:
        raise DataError("the official ML-100K split needs the extracted ml-100k folder; the dataset has none")
    base, test = (_read_official(ds, Path(ds.source_dir) / f"u{number}.{part}") for part in ("base", "test"))
    return base, test


def _read_official(ds: Dataset, path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise DataError(
            f"official split file {path.name} is missing from {path.parent}; set official=false for random folds"
        )
    ratings = read_ml100k_ratings(path)
    indexed = ratings.join(ds.users.select("user_id", "user_idx"), on="user_id").join(
        ds.items.select("item_id", "item_idx"), on="item_id"
    )
    if indexed.height != ratings.height:
        raise DataError(
            f"{path.name}: {ratings.height - indexed.height} rating(s) name users or items not in the dataset"
        )
    return indexed.select(pl.col(c).cast(ds.ratings.schema[c]) for c in _COLUMNS).sort("user_idx", "item_idx")


def _assign_folds(ds: Dataset, cfg: SplitConfig) -> np.ndarray:
    """A 0-based fold per rating: each user's ratings, shuffled, are dealt round-robin from a random start fold.

    Dealing keeps every user's per-fold counts within one of each other, so a user with at least n_folds ratings
    has test ratings in every fold (and training ratings in every fold); the random start spreads the remainders.
    """
    rng = np.random.default_rng(_seed(cfg.seed, _FOLD_STREAM))
    users = ds.ratings["user_idx"].to_numpy()
    order, rank = _shuffled_ranks(users, rng)
    start = rng.integers(0, cfg.n_folds, size=ds.n_users)
    fold = np.empty(len(users), dtype=np.int64)
    fold[order] = (rank + start[users[order]]) % cfg.n_folds
    return fold


def _with_validation(train: pl.DataFrame, cfg: SplitConfig, number: int) -> pl.DataFrame:
    """Mark max(1, round(validation_fraction * n)) random training ratings of each user with n >= the minimum.

    Rounding is half-up; a validation_fraction of 0 means no validation slice at all.
    """
    users = train["user_idx"].to_numpy()
    rng = np.random.default_rng(_seed(cfg.seed, number))
    order, rank = _shuffled_ranks(users, rng)
    counts = np.bincount(users)
    size = np.maximum(1, np.floor(cfg.validation_fraction * counts + 0.5)) if cfg.validation_fraction > 0 else 0
    size = np.where(counts >= cfg.min_user_ratings_for_validation, size, 0)
    marked = np.empty(len(users), dtype=bool)
    marked[order] = rank < size[users[order]]
    return train.with_columns(is_validation=pl.Series(marked))


def _shuffled_ranks(groups: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A permutation that groups equal values in random within-group order, and each row's 0-based rank there."""
    order = np.lexsort((rng.random(len(groups)), groups))
    ordered = groups[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(ordered) else np.empty(0, np.int64)
    sizes = np.diff(np.r_[starts, len(ordered)])
    return order, np.arange(len(ordered)) - np.repeat(starts, sizes)


def _seed(seed: int, stream: int) -> list[int]:
    """Seed-sequence entropy; numpy needs non-negative entries, so negative seeds are folded into range."""
    return [seed % 2**63, stream]


def save_fold(fold: Fold, directory: Path) -> None:
    """`train.parquet`, `test.parquet` and `meta.json`; the folder appears complete or not at all."""
    with atomic_directory(Path(directory)) as tmp:
        fold.train.write_parquet(tmp / "train.parquet")
        fold.test.write_parquet(tmp / "test.parquet")
        (tmp / "meta.json").write_text(json.dumps({"number": fold.number}))


def read_fold(directory: Path) -> Fold:
    directory = Path(directory)
    if not (directory / "meta.json").is_file():
        raise DataError(f"{directory} holds no saved fold (meta.json missing)")
    number = json.loads((directory / "meta.json").read_text())["number"]
    return Fold(number, pl.read_parquet(directory / "train.parquet"), pl.read_parquet(directory / "test.parquet"))


MIN_FOLD_USERS = 10
"""Below this many users with test ratings (or with a validation slice), a fold's figures are mostly noise."""


def small_fold_warnings(
    fold: Fold, n_items: int, max_k: int, positive_threshold: float, trains: bool, pool_size: int | None = None
) -> list[str]:
    """What a fold is too small for, given the run's largest cut-off, whether any model is trained (they select
    and stop on the validation slice) and the rerank pool: one sentence per problem, empty when the fold is fine."""
    problems = []
    test_users = fold.test.filter(pl.col("rating") >= positive_threshold)["user_idx"].n_unique()
    if test_users < MIN_FOLD_USERS:
        problems.append(
            f"only {test_users} users have a relevant test rating (≥ {positive_threshold:g}): its "
            "metrics are mostly noise"
        )
    if n_items <= max_k:
        problems.append(
            f"the catalog has {n_items} items, not more than the largest cut-off k={max_k}: every "
            "list holds every item, so @k metrics cannot tell models apart"
        )
    if pool_size is not None and n_items < pool_size:
        problems.append(f"the catalog has {n_items} items, fewer than the rerank pool of {pool_size}")
    validating = fold.train.filter(pl.col("is_validation"))["user_idx"].n_unique()
    if trains and validating < MIN_FOLD_USERS:
        problems.append(
            f"only {validating} users have a validation slice: early stopping and model selection of "
            "the trained models have little to go on"
        )
    return [f"fold {fold.number}: {p}" for p in problems]


_COLD_STREAM = 104_729  # seed-sequence salt of the cold-start protocol's user draw


def cold_start_plan(fold: Fold, share: float, ns: list[int], seed: int) -> pl.DataFrame:
    """`user_idx, n`: the users the cold-start protocol truncates on this fold, and to how many ratings.

    Candidates are the fold's test users with more than max(ns) training ratings (so every n truncates). A seeded
    `share` of them is drawn and dealt round-robin, in random order, into len(ns) groups, group g keeping its first
    ns[g] ratings: one truncated training set per fold serves every n. A fold without timestamps has no "first"
    ratings to keep, so its plan is empty."""
    if fold.train["timestamp"].null_count() == fold.train.height:
        return pl.DataFrame(schema={"user_idx": fold.train.schema["user_idx"], "n": pl.Int64})
    counts = fold.train.group_by("user_idx").len()
    test_users = fold.test.select("user_idx").unique()
    eligible = np.sort(
        counts.join(test_users, on="user_idx").filter(pl.col("len") > max(ns))["user_idx"].to_numpy()
    ).astype(np.int64)
    rng = np.random.default_rng([seed % 2**63, _COLD_STREAM, fold.number])
    size = int(np.floor(share * len(eligible) + 0.5))
    chosen = rng.permutation(eligible)[:size]
    plan = pl.DataFrame(
        {"user_idx": chosen, "n": [ns[i % len(ns)] for i in range(size)]},
        schema={"user_idx": fold.train.schema["user_idx"], "n": pl.Int64},
    )
    return plan.sort("user_idx")


def truncate_users(train: pl.DataFrame, plan: pl.DataFrame) -> pl.DataFrame:
    """`train` where each user of `plan` keeps only their first `n` ratings by timestamp (ties: lower item_idx;
    validation rows included, and the kept rows all become training rows, since a user that new has no
    validation slice); every other user's rows are untouched, in their original order."""
    indexed = train.with_row_index("_row")
    position = (
        indexed.sort("user_idx", "timestamp", "item_idx", nulls_last=True)
        .with_columns(_pos=pl.int_range(pl.len()).over("user_idx"))
        .select("_row", "_pos")
    )
    marked = indexed.join(position, on="_row").join(plan.select("user_idx", "n"), on="user_idx", how="left")
    kept = marked.filter(pl.col("n").is_null() | (pl.col("_pos") < pl.col("n"))).sort("_row")
    if "is_validation" in kept.columns:
        kept = kept.with_columns(is_validation=pl.col("is_validation") & pl.col("n").is_null())
    return kept.drop("_row", "_pos", "n")


def cold_start_fold(fold: Fold, share: float, ns: list[int], seed: int) -> tuple[Fold, pl.DataFrame]:
    """The fold with the cold-start protocol's users truncated (test unchanged), and the plan behind it."""
    if not ns or min(ns) < 1:
        raise ConfigError(f"cold-start protocol: n must be a non-empty list of positive counts, got {ns}")
    plan = cold_start_plan(fold, share, ns, seed)
    return Fold(fold.number, truncate_users(fold.train, plan), fold.test), plan
