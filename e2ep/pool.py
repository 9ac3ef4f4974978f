"""CPU-bound stage work (training, embedding) in a pool of worker processes sized to the machine.

Why processes and not the flow's threads: models seed and draw from torch's and NumPy's *global* generators
(dropout, initialisation), which threads share, so two fits running side by side in threads disturb each other
and the same seed gave different results with one or two folds in parallel; and torch's intra-op threads of
several fits oversubscribe the cores. Each worker runs one job at a time with `threads` torch threads, so a fit
computes the same numbers whatever the pool size, and the pool keeps every core busy across folds.

A pool is active only inside :func:`worker_pool`; :func:`run_cpu_bound` runs inline when none is (plain function
calls, tests, Dask workers, which already isolate work in their own processes).

:func:`run_isolated` runs a job whose memory should not outlive it (embedding: MiniLM and its encoding heap take a
process from ~250 to ~870 MB, which a long-lived worker would keep for the rest of the run) in a fresh process that
exits afterwards. Both kinds of job take one of the pool's `workers` slots, so no more jobs run at once than cores.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import multiprocessing.process
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, TimeoutError
from contextlib import contextmanager
from typing import Any, TypeVar

from e2ep.interrupt import RunInterrupted, stop_requested

T = TypeVar("T")

_active: ProcessPoolExecutor | None = None
_slots: threading.Semaphore | None = None
"""One permit per worker, taken by every job of the pool, pooled or isolated."""
_threads = 1
_isolated: set[multiprocessing.process.BaseProcess] = set()
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
    global _active, _slots, _threads
    size = workers or default_workers()
    with _lock:
        if _active is not None:
            outer = True
        else:
            outer = False
            # spawn, not fork: the flow process runs Prefect's threads and event loops, which fork would copy
            # mid-flight.
            _active = ProcessPoolExecutor(
                max_workers=size,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(threads, os.getpid()),
            )
            _slots, _threads = threading.Semaphore(size), threads
    failed = False
    try:
        yield size
    except BaseException:
        failed = True
        raise
    finally:
        if not outer:
            with _lock:
                pool, _active, _slots = _active, None, None
            if pool is not None:
                _close(pool, kill=failed)


def _terminate(pool: ProcessPoolExecutor) -> None:
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    with _lock:
        isolated = list(_isolated)
    for process in isolated:
        process.terminate()


def _close(pool: ProcessPoolExecutor, kill: bool) -> None:
    """Wait for the workers to finish; after a failure or an interrupt, stop them at once instead."""
    if kill:
        _terminate(pool)
    pool.shutdown(wait=not kill, cancel_futures=True)


def _interrupted(pool: ProcessPoolExecutor) -> RunInterrupted:
    # SIGINT/SIGTERM of the run: its workers (and isolated jobs) stop now, mid-fit
    _terminate(pool)
    return RunInterrupted("stop requested")


@contextmanager
def _slot(pool: ProcessPoolExecutor, slots: threading.Semaphore) -> Iterator[None]:
    while not slots.acquire(timeout=0.2):
        if stop_requested():
            raise _interrupted(pool)
    try:
        yield
    finally:
        slots.release()


def _release_memory() -> None:
    """Hand freed heap back to the system after a job, so an idle worker does not hold its last job's peak (ease,
    bpr-mf, lightgcn and als fitted one after another in one process: 651 instead of 699 MB afterwards)."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)  # glibc only
    except (AttributeError, OSError):
        pass


def _pooled(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        _release_memory()


def pool_active() -> bool:
    """Whether this process holds an active worker pool (its jobs go to other processes)."""
    return _active is not None


def run_cpu_bound(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in the active worker pool (waiting for a free worker), else in this thread.
    `fn` and its arguments must be picklable (module-level functions, pydantic models, paths)."""
    pool, slots = _active, _slots
    if pool is None or slots is None:
        return fn(*args, **kwargs)
    with _slot(pool, slots):
        future = pool.submit(_pooled, fn, args, kwargs)
        while True:
            try:
                return future.result(timeout=0.2)
            except TimeoutError:
                if stop_requested():
                    raise _interrupted(pool) from None


def _mmap_large_blocks(threshold: int = 1 << 20) -> None:
    """Serve every allocation of `threshold` bytes or more from its own mapping, returned to the system when freed.
    glibc otherwise raises that threshold to 32 MB as blocks are freed, and a job's many tensors of varying size
    fragment the heap: encoding the 943 user profiles of a fold peaked at 1.19-1.24 GB RSS, with this at 0.91 GB
    (the same vectors, bit for bit)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD (a fixed one: no dynamic growth)
        libc.mallopt(-1, threshold)  # M_TRIM_THRESHOLD: give back the heap's free top as well
    except (AttributeError, OSError):  # not glibc
        pass


def _run_alone(
    conn: Any, threads: int, parent: int, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    _init_worker(threads, parent)
    _mmap_large_blocks()
    try:
        outcome: tuple[bool, Any] = (True, fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
        outcome = (False, exc)
    # Plain pickle, not multiprocessing's: that one hands torch tensors over in shared memory, which is gone once
    # this process exits.
    try:
        answer = pickle.dumps(outcome)
    except Exception as exc:  # an unpicklable result or exception
        answer = pickle.dumps((False, RuntimeError(f"{fn.__name__}: cannot return its outcome: {exc!r}")))
    conn.send_bytes(answer)
    conn.close()


def run_isolated(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a fresh process that exits afterwards, in one of the active pool's slots (with the
    pool's torch threads); else in this thread. The same rules as :func:`run_cpu_bound` apply to `fn`."""
    pool, slots = _active, _slots
    if pool is None or slots is None:
        return fn(*args, **kwargs)
    context = multiprocessing.get_context("spawn")
    with _slot(pool, slots):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(
            target=_run_alone,
            args=(send, _threads, os.getpid(), fn, args, kwargs),
            name=f"isolated-{getattr(fn, '__name__', 'job')}",
        )
        with _lock:
            _isolated.add(process)
        try:
            process.start()
            send.close()
            while not receive.poll(0.2):
                if stop_requested():
                    raise _interrupted(pool)
            try:
                ok, value = pickle.loads(receive.recv_bytes())
            except EOFError:  # it ended without an answer (killed, out of memory)
                process.join()
                raise RuntimeError(f"the process running {fn.__name__} died (exit code {process.exitcode})") from None
        finally:
            receive.close()
            if process.pid is not None:
                process.join(timeout=None if not stop_requested() else 5)
            with _lock:
                _isolated.discard(process)
    if not ok:
        raise value
    return value
