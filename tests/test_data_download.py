"""Download, checksum and atomic extraction against a local HTTP server, and the local-folder resolution order."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from data import ArchiveSpec, download_archive, file_digest, load_dataset, locate_movielens
from data.config import DatasetConfig
from e2ep.errors import DataError

GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
ML100K_FILES = ("u.data", "u.item", "u.user", "u.genre")


def ml100k_files() -> dict[str, bytes]:
    """A tiny but well-formed ml-100k folder: 3 users, 4 items (item 4 never rated)."""
    flags = ["0"] * 19
    items = []
    for item, title in enumerate(["Toy Story (1995)", "Heat (1995)", "Brazil (1985)", "Unrated (1990)"], start=1):
        row_flags = flags.copy()
        row_flags[item] = "1"
        items.append("|".join([str(item), title, "01-Jan-1995", "", "http://x", *row_flags]))
    return {
        "u.data": b"1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t3\t4\t881250951\n3\t1\t1\t881250952\n",
        "u.item": ("\n".join(items) + "\n").encode("latin-1"),
        "u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n",
        "u.genre": ("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n").encode(),
    }


def zip_bytes(files: dict[str, bytes], folder: str = "ml-100k") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in files.items():
            zf.writestr(f"{folder}/{name}", content)
    return buffer.getvalue()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, and its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2EP_DATA_DIR", raising=False)
    monkeypatch.delenv("E2EP_CACHE_DIR", raising=False)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/ml-100k.zip"


def spec_for(url: str, payload: bytes) -> ArchiveSpec:
    return ArchiveSpec(url=url, md5=hashlib.md5(payload).hexdigest(), folder="ml-100k", required=ML100K_FILES)


def test_download_verifies_and_extracts(served: tuple[Path, str], tmp_path: Path) -> None:
    root, base = served
    payload = zip_bytes(ml100k_files())
    (root / "ml-100k.zip").write_bytes(payload)
    cache = tmp_path / "cache"
    folder = download_archive(spec_for(f"{base}/ml-100k.zip", payload), cache)
    assert folder == cache / "ml-100k"
    assert (folder / "u.data").read_bytes() == ml100k_files()["u.data"]
    assert sorted(p.name for p in cache.iterdir()) == ["ml-100k"]  # no temp zip or staging folder left


def test_checksum_mismatch_leaves_nothing(served: tuple[Path, str], tmp_path: Path) -> None:
    root, base = served
    payload = zip_bytes(ml100k_files())
    (root / "ml-100k.zip").write_bytes(payload)
    cache = tmp_path / "cache"
    wrong = ArchiveSpec(f"{base}/ml-100k.zip", "0" * 32, "ml-100k", ML100K_FILES)
    with pytest.raises(DataError, match="checksum mismatch"):
        download_archive(wrong, cache)
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("payload", [b"this is not a zip archive", zip_bytes(ml100k_files())[:-40]])
def test_corrupt_zip_leaves_nothing(served: tuple[Path, str], tmp_path: Path, payload: bytes) -> None:
    root, base = served
    (root / "ml-100k.zip").write_bytes(payload)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="not a valid zip"):
        download_archive(spec_for(f"{base}/ml-100k.zip", payload), cache)
    assert list(cache.iterdir()) == []


def test_archive_missing_a_required_file_leaves_nothing(served: tuple[Path, str], tmp_path: Path) -> None:
    root, base = served
    files = ml100k_files()
    del files["u.user"]
    payload = zip_bytes(files)
    (root / "ml-100k.zip").write_bytes(payload)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"lacks ml-100k/u\.user"):
        download_archive(spec_for(f"{base}/ml-100k.zip", payload), cache)
    assert list(cache.iterdir()) == []


def test_unreachable_url_is_one_line_pointing_at_local_copy(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        download_archive(spec_for(closed_port_url(), b""), cache)
    message = str(err.value)
    assert "\n" not in message
    assert "failed" in message and "E2EP_DATA_DIR" in message and "ml-100k/" in message
    assert list(cache.iterdir()) == []


def test_http_error_is_a_data_error(served: tuple[Path, str], tmp_path: Path) -> None:
    _, base = served
    with pytest.raises(DataError, match="404"):
        download_archive(spec_for(f"{base}/missing.zip", b""), tmp_path / "cache")


def test_load_dataset_downloads_once_then_uses_cache(served: tuple[Path, str], tmp_path: Path) -> None:
    root, base = served
    payload = zip_bytes(ml100k_files())
    archive = root / "ml-100k.zip"
    archive.write_bytes(payload)
    cfg = DatasetConfig(name="ml-100k", cache_dir=str(tmp_path / "cache"))
    ds = load_dataset(cfg, archives={"ml-100k": spec_for(f"{base}/ml-100k.zip", payload)})
    assert (ds.ratings.height, ds.n_users, ds.n_items) == (4, 3, 4)
    archive.unlink()  # a second load must not touch the network
    again = load_dataset(cfg, archives={"ml-100k": spec_for(f"{base}/ml-100k.zip", payload)})
    assert again.ratings.equals(ds.ratings)


def test_data_dir_is_used_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "data" / "ml-100k"
    local.mkdir(parents=True)
    for name, content in ml100k_files().items():
        (local / name).write_bytes(content)
    offline = {"ml-100k": spec_for(closed_port_url(), b"")}
    cfg = DatasetConfig(name="ml-100k", data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    assert locate_movielens(cfg, offline) == local
    monkeypatch.setenv("E2EP_DATA_DIR", str(tmp_path / "data"))
    assert locate_movielens(DatasetConfig(name="ml-100k", cache_dir=str(tmp_path / "cache")), offline) == local


def test_cache_env_var_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = tmp_path / "envcache" / "ml-100k"
    cached.mkdir(parents=True)
    for name, content in ml100k_files().items():
        (cached / name).write_bytes(content)
    monkeypatch.setenv("E2EP_CACHE_DIR", str(tmp_path / "envcache"))
    assert locate_movielens(DatasetConfig(name="ml-100k"), {"ml-100k": spec_for(closed_port_url(), b"")}) == cached


def test_incomplete_data_dir_names_the_missing_file(tmp_path: Path) -> None:
    local = tmp_path / "data" / "ml-1m"
    local.mkdir(parents=True)
    (local / "movies.dat").write_bytes(b"1::Toy Story (1995)::Comedy\n")
    (local / "users.dat").write_bytes(b"1::F::1::10::48067\n")
    with pytest.raises(DataError, match=r"lacks ratings\.dat.*'csv' dataset") as err:
        locate_movielens(DatasetConfig(name="ml-1m", data_dir=str(tmp_path / "data")))
    assert "movies.dat" not in str(err.value)


def test_file_digest_is_sha256(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"abc" * 1_000_000)
    assert file_digest(path) == hashlib.sha256(b"abc" * 1_000_000).hexdigest()
    path.write_bytes(b"abd" * 1_000_000)
    assert file_digest(path) != hashlib.sha256(b"abc" * 1_000_000).hexdigest()
