"""Stopping a run on SIGINT or SIGTERM: a process-wide stop flag that long loops check, and the CLI's runner.

Prefect runs tasks and subflows in worker threads, where no signal ever arrives, and on the way out waits for
every one of them (its task runner, and Python's exit, join their thread pools); while a flow runs in the main
thread it also replaces the SIGTERM handler with its own. So `run_interruptibly` runs the flow in a worker thread
and keeps the main thread for the signals. The first SIGINT or SIGTERM sets the flag: LLM calls stop retrying and
pending ones are cancelled (`e2ep.llm`), training stops between batches (`models.training.bpr_epoch`), each by
raising `RunInterrupted` (a KeyboardInterrupt, so Prefect records a crash and never retries it). Answered LLM calls
are already in the memo and finished task results already persisted, so nothing done is lost. The process exits
130 (SIGINT) or 143 (SIGTERM) once the flow has unwound, or after `grace_s` seconds, or at a second signal.
"""

from __future__ import annotations

import contextvars
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")
log = logging.getLogger("e2ep")

STOP = threading.Event()
"""Set once a stop was requested; checked by every loop that can run for long."""

_received: list[int] = []


class RunInterrupted(KeyboardInterrupt):
    """The run was asked to stop (SIGINT or SIGTERM)."""


def stop_requested() -> bool:
    return STOP.is_set()


def check_stop() -> None:
    """Raise RunInterrupted when a stop was requested: call it between units of work."""
    if STOP.is_set():
        raise RunInterrupted("stop requested")


def sleep(seconds: float) -> None:
    """`time.sleep` that ends early, raising RunInterrupted, when a stop is requested."""
    if STOP.wait(max(0.0, seconds)):
        raise RunInterrupted("stop requested")


def request_stop(signum: int = signal.SIGINT) -> None:
    if not _received:
        _received.append(signum)
    STOP.set()


def exit_code(signum: int) -> int:
    return 128 + signum


def stop_prefect_servers() -> None:
    """Stop Prefect's temporary API server now. Its own atexit handler sends SIGTERM and waits up to 5 s, which
    uvicorn spends waiting for the run's idle keep-alive connections; uvicorn exits at once on a second signal."""
    try:
        from prefect.server.api.server import SubprocessASGIServer
    except Exception:
        return
    for server in list(getattr(SubprocessASGIServer, "_instances", {}).values()):
        process = getattr(server, "server_process", None)
        if process is None or process.poll() is not None:
            continue
        for send in (process.terminate, process.terminate, process.kill):
            send()
            try:
                process.wait(timeout=0.5)
                break
            except Exception:
                continue


def hard_exit(code: int) -> NoReturn:
    """Exit now without joining worker threads (an LLM call in flight may take a minute to time out) and without
    the atexit handlers (Prefect's spend 5 s draining logs and events to an API that is going away): stop
    Prefect's temporary server, flush the streams, leave."""
    stop_prefect_servers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed pipe must not keep the process alive
            pass
    os._exit(code)


def leave_if_busy(code: int) -> None:
    """After a failed run: exit now if e2ep's LLM threads still wait on calls in flight (a hanging provider would
    hold the exit up to `llm.timeout_s`); otherwise return and let the process end normally."""
    if any(t.is_alive() and t.name.startswith(("e2ep-llm", "e2ep-rerank")) for t in threading.enumerate()):
        hard_exit(code)


def run_interruptibly(fn: Callable[[], T], grace_s: float = 3.0) -> T:
    """`fn()` in a worker thread, the main thread waiting for it and for SIGINT/SIGTERM; returns its value or
    raises its exception. On a signal the process exits (see the module docstring) and this never returns."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc

    def on_signal(signum: int, frame: Any) -> None:
        if STOP.is_set():  # a second signal: the person means it
            print(f"e2ep: stopped ({signal.Signals(signum).name} again)", file=sys.stderr)
            hard_exit(exit_code(_received[0] if _received else signum))
        request_stop(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    # In a copy of this thread's context: settings entered here (e.g. the run's Prefect API URL) hold there too.
    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(target,), name="e2ep-run", daemon=True)
    try:
        worker.start()
        while worker.is_alive() and not STOP.is_set():
            worker.join(0.1)
        if STOP.is_set():
            signum = _received[0] if _received else signal.SIGINT
            name = signal.Signals(signum).name
            print(
                f"e2ep: {name} received: stopping (answered LLM calls and finished results are kept)",
                file=sys.stderr,
                flush=True,
            )
            started = time.monotonic()
            worker.join(grace_s)
            waited = time.monotonic() - started
            if worker.is_alive():
                log.warning("run still busy %.1f s after %s; exiting without it", waited, name)
            print(f"e2ep: stopped by {name}", file=sys.stderr, flush=True)
            hard_exit(exit_code(signum))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
