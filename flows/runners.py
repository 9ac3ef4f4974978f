"""The task runner that fold subflows run on, chosen by the run's configuration (a deployment's parameters)."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.config import ExperimentConfig


def current_api_url() -> str:
    """The Prefect API this process talks to (a server's, or the temporary one Prefect starts when none is set)."""
    with get_client(sync_client=True) as client:
        return str(client.api_url)


def fold_task_runner(cfg: ExperimentConfig, parallel: int) -> TaskRunner:
    """`threads`: a thread pool of `parallel` workers. `dask`: prefect-dask's DaskTaskRunner on the cluster at
    `dask_address`, else on a LocalCluster of `parallel` single-threaded workers that lives as long as the runner
    (each fold trains with torch's own threads, so one Dask thread per worker avoids oversubscription)."""
    if cfg.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=parallel)
    from prefect_dask.task_runners import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    cluster = {
        "n_workers": parallel,
        "threads_per_worker": 1,
        "processes": cfg.dask_processes,
        "dashboard_address": ":0",
    }
    if cfg.dask_processes:
        # Worker processes report their subflows to this run's API, including Prefect's temporary local server.
        cluster["env"] = {"PREFECT_API_URL": current_api_url()}
    return DaskTaskRunner(cluster_kwargs=cluster)
