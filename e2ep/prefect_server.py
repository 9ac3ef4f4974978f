"""The run's own temporary Prefect server, which dies with the run.

With no `PREFECT_API_URL`, Prefect starts a temporary local server (uvicorn in a subprocess) at the first API call
and stops it at exit; a run killed with SIGKILL never reaches that, so the server is left running, adopted by init.
`e2ep run` therefore starts the same server itself, as a child that ends as soon as its parent does:

- on Linux the kernel sends it SIGKILL when the run dies (`PR_SET_PDEATHSIG`, set by the child itself, then
  checked against the parent it was started by, so a parent that died in between is noticed too);
- everywhere, a thread of the child polls its parent pid and exits when the run is gone (the portable fallback).

    python -m e2ep.prefect_server PARENT_PID PORT        # what `temporary_server` starts (not for direct use)
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx

from e2ep.errors import E2EPError

_PR_SET_PDEATHSIG = 1
_PARENT_POLL_S = 0.5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _startup_timeout_s() -> float:
    return float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90"))


@contextmanager
def temporary_server() -> Iterator[Callable[[], str | None]]:
    """Start a local Prefect server tied to this process; yields `ready`, which waits until the server answers,
    points Prefect at it for the rest of the block and returns its API URL. The server starts on entry, so its
    start-up (seconds: uvicorn and Prefect's app) overlaps whatever the caller does before calling `ready`. With
    `PREFECT_API_URL` already set (a real server, a deployment run) nothing is started (`ready` returns None).

    Must be entered from the main thread: the kernel's parent-death signal follows the thread that started the
    child.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield lambda: None
        return
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "e2ep.prefect_server", str(os.getpid()), str(port)], env=env, stdin=subprocess.DEVNULL
    )
    settings = ExitStack()  # Prefect pointed at the server, from `ready()` to the end of the block
    reached = False

    def ready() -> str:
        nonlocal reached
        if not reached:
            _wait_until_healthy(api_url, process, _startup_timeout_s())
            from prefect.settings import PREFECT_API_URL, temporary_settings

            # The environment too: processes the run starts (Dask workers) report to the same server.
            os.environ["PREFECT_API_URL"] = api_url
            settings.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
            reached = True
        return api_url

    try:
        yield ready
    finally:
        settings.close()
        if reached:  # send the logs and events the run still holds, while the server is up
            _drain_prefect_workers()
            os.environ.pop("PREFECT_API_URL", None)
        _stop(process)


def _drain_prefect_workers() -> None:
    """Send the logs and events Prefect still holds while the server is up (else they fail at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=5)
        except Exception:  # noqa: BLE001 - best effort: a lost log line must not hide the run's own outcome
            pass


def wait_for_api(api_url: str, timeout_s: float, alive: subprocess.Popen[Any] | None = None) -> None:
    """Poll `<api_url>/health` until it answers 200; TimeoutError after `timeout_s`, RuntimeError if `alive` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"Prefect server exited with status {alive.returncode} before it was ready")
        try:
            if httpx.get(f"{api_url.rstrip('/')}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"Prefect API at {api_url} not ready after {timeout_s:.0f} s")


def _wait_until_healthy(api_url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    try:
        wait_for_api(api_url, timeout_s, alive=process)
    except RuntimeError:
        raise E2EPError(f"the temporary Prefect server exited with status {process.returncode} at start") from None
    except TimeoutError:
        raise E2EPError(
            f"the temporary Prefect server did not answer within {timeout_s:.0f} s "
            "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)"
        ) from None


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with(parent: int) -> None:
    """Arrange for this process to end when `parent` does (see the module docstring)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> None:
    parent, port = int(argv[0]), int(argv[1])
    _die_with(parent)
    import uvicorn

    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
