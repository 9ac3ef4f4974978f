"""Atomic, content-addressed files passed between pipeline stages.

Tasks exchange small :class:`FileRef` objects rather than data frames: the reference carries the file's digest,
so Prefect's input-based cache keys change exactly when the content does.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel

from e2ep.errors import DataError


class FileRef(BaseModel, frozen=True):
    """A file written by a stage, identified by its content."""

    path: str
    digest: str

    def read_parquet(self) -> pl.DataFrame:
        if not Path(self.path).is_file():
            raise DataError(f"cached stage output {self.path} is missing; delete the cache folder (.e2ep) and rerun")
        return pl.read_parquet(self.path)


def file_digest(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes, for cache keys that change exactly when the content does."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stable_hash(*parts: Any) -> str:
    """Short digest of JSON-able parts (pydantic models are dumped first)."""
    normalised = [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in parts]
    return hashlib.sha256(json.dumps(normalised, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes owner-only files; outputs get the permissions a plain open() would give them.
_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` then rename tmp over `path`, so readers never see a half-written file (a writer that
    fails, or a process killed mid-write, leaves the previous version; a kill may leave a hidden `.name.*.tmp`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_parquet(frame: pl.DataFrame, path: str | Path) -> FileRef:
    written = atomic_write(path, lambda tmp: frame.write_parquet(tmp))
    return FileRef(path=str(written), digest=file_digest(written))


def write_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
