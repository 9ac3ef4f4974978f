"""CPU-bound work in worker processes: the same numbers as inline, whatever the pool size."""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from e2ep.pool import run_cpu_bound, worker_pool
from tests.pool_jobs import noisy_fit, worker_pid


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
