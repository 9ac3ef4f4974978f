"""Test-session set-up: a private e2ep/Prefect home so tests never touch a developer's caches."""

import os
import tempfile
from pathlib import Path

import pytest

# Must happen before anything imports prefect, which reads its settings at import.
_HOME = Path(tempfile.mkdtemp(prefix="e2ep-tests-"))
os.environ["E2EP_HOME"] = str(_HOME)
for _key in ("PREFECT_HOME", "PREFECT_LOCAL_STORAGE_PATH", "PREFECT_API_URL"):
    os.environ.pop(_key, None)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one of several test processes: one torch thread each, no oversubscription
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from e2ep.runtime import configure_environment  # noqa: E402

configure_environment()

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The development data folder (E2EP_DATA_DIR, else ../shared/data beside the checkout), if present."""
    candidates = [os.environ.get("E2EP_DATA_DIR"), str(REPO.parent / "shared" / "data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "ml-100k" / "u.data").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of fits on tiny tensors, where intra-op threads only add synchronisation
    (which dominates on a busy machine); use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
