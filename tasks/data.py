"""Data stages: prepare the dataset (download or read, parse, index) and cut it into folds.

Both are cheap and deterministic, so they always run; what they write is identified by content, so the expensive
stages downstream are still served from cache when the data did not change.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from data import Dataset, Fold, load_dataset, make_folds, read_dataset, read_fold, save_dataset, save_fold
from data.config import DatasetConfig, SplitConfig
from data.files import atomic_directory
from data.splits import cold_start_fold
from e2ep.runtime import work_dir
from e2ep.store import file_digest, stable_hash
from evaluation.config import ColdStartProtocolConfig


class DatasetRef(BaseModel, frozen=True):
    name: str
    directory: str
    digest: str
    n_users: int
    n_items: int

    def load(self) -> Dataset:
        return read_dataset(Path(self.directory))


COLD_START_PLAN = "cold_start.parquet"


class FoldRef(BaseModel, frozen=True):
    number: int
    directory: str
    digest: str

    def load(self) -> Fold:
        return read_fold(Path(self.directory))

    def cold_start_plan(self) -> pl.DataFrame | None:
        """`user_idx, n` of a cold-start protocol fold (its truncated users); None for an ordinary fold."""
        path = Path(self.directory) / COLD_START_PLAN
        return pl.read_parquet(path) if path.is_file() else None

    def load_train(self) -> pl.DataFrame:
        """The training side only (validation slice flagged): for stages that must not see the test ratings."""
        return pl.read_parquet(Path(self.directory) / "train.parquet")


def _digest_dir(directory: Path) -> str:
    return stable_hash(*[(p.name, file_digest(p)) for p in sorted(directory.glob("*.parquet"))])


def prepare_dataset(cfg: DatasetConfig) -> DatasetRef:
    dataset = load_dataset(cfg)
    directory = work_dir() / "datasets" / f"{cfg.name}-{stable_hash(cfg)}"
    save_dataset(dataset, directory)
    return DatasetRef(
        name=dataset.name,
        directory=str(directory),
        digest=_digest_dir(directory),
        n_users=dataset.n_users,
        n_items=dataset.n_items,
    )


def split_dataset(dataset: DatasetRef, cfg: SplitConfig) -> list[FoldRef]:
    # Which folds a run selects does not change what each fold holds: fold 1 of a `--folds 1` run is the same
    # file (and cache key) as fold 1 of the full run, so nothing trained there is trained again.
    layout = stable_hash(cfg.model_copy(update={"folds": None}))
    root = work_dir() / "folds" / f"{dataset.name}-{dataset.digest[:12]}-{layout}"
    refs = []
    for fold in make_folds(dataset.load(), cfg):
        directory = root / f"fold-{fold.number}"
        save_fold(fold, directory)
        refs.append(FoldRef(number=fold.number, directory=str(directory), digest=_digest_dir(directory)))
    return refs


def cold_start_split(fold: FoldRef, cfg: ColdStartProtocolConfig) -> FoldRef:
    """The fold with the cold-start protocol's users truncated, saved beside it with its plan."""
    truncated, plan = cold_start_fold(fold.load(), cfg.share, cfg.n, cfg.seed)
    directory = Path(fold.directory).with_name(f"{Path(fold.directory).name}-cold-start-{stable_hash(cfg)[:12]}")
    with atomic_directory(directory) as tmp:
        truncated.train.write_parquet(tmp / "train.parquet")
        truncated.test.write_parquet(tmp / "test.parquet")
        plan.write_parquet(tmp / COLD_START_PLAN)
        (tmp / "meta.json").write_text(json.dumps({"number": truncated.number}))
    return FoldRef(number=fold.number, directory=str(directory), digest=_digest_dir(directory))


# task(...)(fn), as the decorator does: prefect's overloads type no task(fn, name=...) call.
prepare_dataset_task = task(name="prepare-dataset", cache_policy=NO_CACHE)(prepare_dataset)
split_dataset_task = task(name="split-folds", cache_policy=NO_CACHE)(split_dataset)
cold_start_split_task = task(
    name="cold-start-split", cache_policy=NO_CACHE, task_run_name="cold-start-split-fold{fold.number}"
)(cold_start_split)
