"""The data layer: load MovieLens or any ratings CSV into a :class:`Dataset`, split it into :class:`Fold` s, cache both.

Importing from here is the public API; the submodules are implementation detail.
"""

from data.dataset import Dataset, build_dataset, load_dataset, read_dataset, save_dataset
from data.download import ARCHIVES, ArchiveSpec, download_archive, locate_movielens
from data.splits import Fold, make_folds, read_fold, save_fold
from e2ep.store import file_digest

__all__ = [
    "ARCHIVES",
    "ArchiveSpec",
    "Dataset",
    "Fold",
    "build_dataset",
    "download_archive",
    "file_digest",
    "load_dataset",
    "locate_movielens",
    "make_folds",
    "read_dataset",
    "read_fold",
    "save_dataset",
    "save_fold",
]
