"""Data stages: prepare the dataset (download or read, parse, index) and cut it into folds.

Both are cheap and deterministic, so they always run; what they write is identified by content, so the expensive
stages downstream are still served from cache when the data did not change.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from e2ep.config import DatasetConfig, SplitConfig
from e2ep.data import Dataset, Fold, load_dataset, make_folds, read_dataset, read_fold, save_dataset, save_fold
from e2ep.runtime import work_dir
from e2ep.store import file_digest, stable_hash


class DatasetRef(BaseModel, frozen=True):
    name: str
    directory: str
    digest: str
    n_users: int
    n_items: int

    def load(self) -> Dataset:
        return read_dataset(Path(self.directory))


class FoldRef(BaseModel, frozen=True):
    number: int
    directory: str
    digest: str

    def load(self) -> Fold:
        return read_fold(Path(self.directory))


def _digest_dir(directory: Path) -> str:
    return stable_hash(*[(p.name, file_digest(p)) for p in sorted(directory.glob("*.parquet"))])


def prepare_dataset(cfg: DatasetConfig) -> DatasetRef:
    dataset = load_dataset(cfg)
    directory = work_dir() / "datasets" / f"{cfg.name}-{stable_hash(cfg)}"
    save_dataset(dataset, directory)
    return DatasetRef(name=dataset.name, directory=str(directory), digest=_digest_dir(directory),
                      n_users=dataset.n_users, n_items=dataset.n_items)


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


prepare_dataset_task = task(prepare_dataset, name="prepare-dataset", cache_policy=NO_CACHE)
split_dataset_task = task(split_dataset, name="split-folds", cache_policy=NO_CACHE)
