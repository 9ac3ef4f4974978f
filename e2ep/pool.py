"""CPU-bound stage work (training, embedding) in a pool of worker processes sized to the machine.

Why processes and not the flow's threads: models seed and draw from torch's and NumPy's *global* generators
(dropout, initialisation), which threads share, so two fits running side by side in threads disturb each other
and the same seed gave different results with one or two folds in parallel; and torch's intra-op threads of
several fits oversubscribe the cores. Each worker runs one job at a time with `threads` torch threads, so a fit
computes the same numbers whatever the pool size, and the pool keeps every core busy across folds.

A pool is active only inside :func:`worker_pool`; :func:`run_cpu_bound` runs inline when none is (plain function
calls, tests, Dask workers, which already isolate work in their own processes).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, TimeoutError
from contextlib import contextmanager
from typing import Any, TypeVar

from e2ep.interrupt import RunInterrupted, stop_requested

T = TypeVar("T")

_active: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _exit_with_parent(parent: int) -> None:
    # A worker never outlives its run, even one killed with SIGKILL (which no handler of the run can see).
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(1.0)


def _init_worker(threads: int, parent: int) -> None:
    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()


@contextmanager
def worker_pool(workers: int = 0, threads: int = 1) -> Iterator[int]:
    """Run :func:`run_cpu_bound` jobs of this process in `workers` processes (0: one per core) with `threads`
    torch threads each, until the block ends. Yields the pool size. Nested use keeps the outer pool."""
    global _active
    size = workers or default_workers()
    with _lock:
        if _active is not None:
            outer = True
        else:
            outer = False
            # spawn, not fork: the flow process runs Prefect's threads and event loops, which fork would copy
            # mid-flight.
            _active = ProcessPoolExecutor(max_workers=size, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_init_worker, initargs=(threads, os.getpid()))
    failed = False
    try:
        yield size
    except BaseException:
        failed = True
        raise
    finally:
        if not outer:
            with _lock:
                pool, _active = _active, None
            if pool is not None:
                _close(pool, kill=failed)


def _terminate(pool: ProcessPoolExecutor) -> None:
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def _close(pool: ProcessPoolExecutor, kill: bool) -> None:
    """Wait for the workers to finish; after a failure or an interrupt, stop them at once instead."""
    if kill:
        _terminate(pool)
    pool.shutdown(wait=not kill, cancel_futures=True)


def run_cpu_bound(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in the active worker pool (waiting for a free worker), else in this thread.
    `fn` and its arguments must be picklable (module-level functions, pydantic models, paths)."""
    pool = _active
    if pool is None:
        return fn(*args, **kwargs)
    future = pool.submit(fn, *args, **kwargs)
    while True:
        try:
            return future.result(timeout=0.2)
        except TimeoutError:
            if stop_requested():  # SIGINT/SIGTERM of the run: its workers stop now, mid-fit
                _terminate(pool)
                raise RunInterrupted("stop requested") from None
