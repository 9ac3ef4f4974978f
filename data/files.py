"""Small file-system helpers shared by the data layer: atomic folder writes, digests, (gzipped) file reads."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from e2ep.errors import DataError


def read_bytes(path: Path) -> bytes:
    """A file's bytes, transparently gunzipped when its name ends in `.gz`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path.name}: not a valid gzip file ({exc})") from None


def replace_directory(source: Path, target: Path) -> None:
    """Move the finished folder `source` to `target`, replacing any folder already there.

    `os.replace` cannot overwrite a non-empty folder, so an existing target is first renamed aside (one rename,
    so the target path is only ever absent, never half-written) and removed afterwards.
    """
    if not target.exists():
        os.replace(source, target)
        return
    aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
    os.replace(target, aside / target.name)
    os.replace(source, target)
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def atomic_directory(directory: Path) -> Iterator[Path]:
    """Yield an empty sibling temp folder to write into; on success it becomes `directory`, on error it is removed.

    Readers (and a crashed run's successor) therefore never see a partially written output folder.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        yield tmp
        replace_directory(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
