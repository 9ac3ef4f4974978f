"""Slots of the worker pool (its own module: `tests/test_pool.py` keeps a two-worker pool open for its module, and
a pool opened inside it would share that pool's two slots)."""

from concurrent.futures import ThreadPoolExecutor

from e2ep.pool import run_cpu_bound, run_isolated, worker_pool
from tests.pool_jobs import alone


def test_isolated_and_pooled_jobs_share_the_pool_s_slots(tmp_path):
    marker = str(tmp_path / "busy")
    with worker_pool(workers=1), ThreadPoolExecutor(4) as threads:
        runs = [threads.submit(run, alone, marker) for run in (run_cpu_bound, run_isolated) * 2]
        assert [r.result() for r in runs] == [True] * 4
