"""Finding an extracted MovieLens folder locally, or downloading and verifying the official GroupLens archive.

Every download is checked against the MD5 GroupLens publishes next to the archive (`<archive>.md5`) and extracted
into a temp folder that is renamed into place only when complete, so the cache never holds a half-extracted copy.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO

from data.config import DatasetConfig
from data.files import replace_directory
from e2ep.errors import DataError

DATA_DIR_ENV = "E2EP_DATA_DIR"
CACHE_DIR_ENV = "E2EP_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/e2ep")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveSpec:
    """Where an archive lives, its expected MD5, the folder it extracts to, and the files that folder must hold."""

    url: str
    md5: str
    folder: str
    required: tuple[str, ...]


# MD5s as published by GroupLens in ml-100k.zip.md5 / ml-1m.zip.md5 (the same values TensorFlow's and
# PaddlePaddle's MovieLens loaders pin).
ARCHIVES: Mapping[str, ArchiveSpec] = MappingProxyType(
    {
        "ml-100k": ArchiveSpec(
            url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
            md5="0e33842e24a9c977be4e0107933c0723",
            folder="ml-100k",
            required=("u.data", "u.item", "u.user", "u.genre"),
        ),
        "ml-1m": ArchiveSpec(
            url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
            md5="c4d9eecfca2ab87c1945afe126590906",
            folder="ml-1m",
            required=("ratings.dat", "movies.dat", "users.dat"),
        ),
    }
)


def locate_movielens(cfg: DatasetConfig, archives: Mapping[str, ArchiveSpec] = ARCHIVES) -> Path:
    """The extracted folder for `cfg.name`: from the data dir (no network), else the cache, else a fresh download."""
    spec = archives[cfg.name]
    data_dir = cfg.data_dir or os.environ.get(DATA_DIR_ENV)
    if data_dir:
        local = Path(data_dir).expanduser() / spec.folder
        if local.is_dir():
            if missing := missing_files(local, spec):
                raise DataError(
                    f"{local} lacks {', '.join(missing)} (part of the official {cfg.name} archive): add it, point "
                    f"--data-dir/{DATA_DIR_ENV} at a complete copy, or use the 'csv' dataset with a ratings file"
                )
            return local
    cached = cache_dir(cfg) / spec.folder
    if not missing_files(cached, spec):
        return cached
    return download_archive(spec, cache_dir(cfg))


def cache_dir(cfg: DatasetConfig) -> Path:
    return Path(cfg.cache_dir or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser()


def missing_files(folder: Path, spec: ArchiveSpec) -> list[str]:
    return [name for name in spec.required if not (folder / name).is_file()]


def download_archive(spec: ArchiveSpec, cache: Path, timeout_s: float = 60.0) -> Path:
    """Download, verify and extract `spec` into `cache/<folder>`; return that folder. Leaves no temp files behind."""
    cache.mkdir(parents=True, exist_ok=True)
    fd, part_name = tempfile.mkstemp(dir=cache, prefix=f".{spec.folder}.", suffix=".zip.part")
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as out:
            md5 = _fetch(spec, out, timeout_s)
        if md5 != spec.md5:
            raise DataError(
                f"{spec.url}: checksum mismatch (md5 {md5}, expected {spec.md5}); the download is corrupt or "
                f"the archive changed. Retry, or set {DATA_DIR_ENV} to a folder containing a verified {spec.folder}/"
            )
        return _extract(part, spec, cache)
    finally:
        part.unlink(missing_ok=True)


def _fetch(spec: ArchiveSpec, out: BinaryIO, timeout_s: float) -> str:
    """Stream the archive into `out`; return the MD5 of what was received."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(spec.url, timeout=timeout_s) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        detail = (
            f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
        )
        reason = " ".join(str(detail).split())  # one line, whatever the OS put in the message
        raise DataError(
            f"download of {spec.url} failed ({reason}); to use a local copy, pass --data-dir or set "
            f"{DATA_DIR_ENV} to a folder containing {spec.folder}/"
        ) from None
    return digest.hexdigest()


def _extract(archive: Path, spec: ArchiveSpec, cache: Path) -> Path:
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{spec.folder}.", suffix=".extract"))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging)  # zipfile drops absolute paths and `..`, so entries stay inside staging
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise DataError(f"{spec.url}: the downloaded archive is not a valid zip ({exc})") from None
        extracted = staging / spec.folder
        if missing := missing_files(extracted, spec):
            raise DataError(f"{spec.url}: the archive lacks {', '.join(f'{spec.folder}/{m}' for m in missing)}")
        target = cache / spec.folder
        replace_directory(extracted, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
