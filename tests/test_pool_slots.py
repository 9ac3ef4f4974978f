"""Slots of the worker pool (its own module: `tests/test_pool.py` keeps a two-worker pool open for its
module, and a nested pool would share that pool's slots)."""

import time
from concurrent.futures import ThreadPoolExecutor

from e2ep.pool import run_cpu_bound, run_isolated, worker_pool
from tests.pool_jobs import alone, started_at


def test_an_isolated_job_takes_the_next_free_slot_before_waiting_pooled_jobs():
    with worker_pool(workers=1), ThreadPoolExecutor(5) as threads:
        busy = threads.submit(run_cpu_bound, started_at, 1.0)
        time.sleep(0.3)
        waiting = [threads.submit(run_cpu_bound, started_at, 0.1) for _ in range(3)]
        time.sleep(0.3)
        urgent = threads.submit(run_isolated, started_at, 0.1)
        busy.result()
        assert all(urgent.result() < w.result() for w in waiting)


def test_isolated_and_pooled_jobs_share_the_pool_s_slots(tmp_path):
    marker = str(tmp_path / "busy")
    with worker_pool(workers=1), ThreadPoolExecutor(4) as threads:
        runs = [threads.submit(run, alone, marker) for run in (run_cpu_bound, run_isolated) * 2]
        assert [r.result() for r in runs] == [True] * 4
