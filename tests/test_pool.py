"""CPU-bound work in worker processes: the same numbers as inline, whatever the pool size."""

import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from e2ep.interrupt import STOP, RunInterrupted
from e2ep.pool import run_cpu_bound, run_isolated, worker_pool
from tests.pool_jobs import noisy_fit, wait_forever, worker_pid


def test_without_a_pool_jobs_run_inline():
    assert run_cpu_bound(worker_pid) == os.getpid()


@pytest.fixture(scope="module")
def two_workers():
    with worker_pool(workers=2) as size:
        yield size


def test_jobs_side_by_side_in_workers_compute_what_one_inline_job_does(two_workers):
    inline = noisy_fit(7)
    # Two fits at once, each drawing from its process's global generator, as two folds' models do.
    with ThreadPoolExecutor(2) as threads:
        pids = list(threads.map(lambda _: run_cpu_bound(worker_pid), range(4)))
        results = list(threads.map(lambda _: run_cpu_bound(noisy_fit, 7), range(4)))
    assert os.getpid() not in pids
    assert all(torch.equal(inline, r) for r in results)


def test_an_error_in_a_job_reaches_the_caller(two_workers):
    with pytest.raises(ZeroDivisionError):
        run_cpu_bound(divmod, 1, 0)


def test_an_isolated_job_runs_in_a_process_of_its_own_that_is_gone_afterwards(two_workers):
    pooled = {run_cpu_bound(worker_pid) for _ in range(4)}
    pid = run_isolated(worker_pid)
    assert pid != os.getpid() and pid not in pooled
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert torch.equal(run_isolated(noisy_fit, 7), noisy_fit(7))
    with pytest.raises(ZeroDivisionError):
        run_isolated(divmod, 1, 0)


def test_a_stop_request_ends_an_isolated_job_at_once(two_workers):
    with ThreadPoolExecutor(1) as thread:
        job = thread.submit(run_isolated, wait_forever)
        time.sleep(1.0)
        STOP.set()
        try:
            with pytest.raises(RunInterrupted):
                job.result(timeout=10)
        finally:
            STOP.clear()
    assert not multiprocessing.active_children() or all(
        not p.name.startswith("isolated-") for p in multiprocessing.active_children()
    )
