"""kill -9 of a run: a training finished inside a fold survives the kill, and no Prefect server outlives the run.

The experiment CLI runs in a subprocess (own E2EP_HOME) on a tiny CSV dataset without the semantic layer. Only the
run's own pid gets SIGKILL, as `kill -9 <pid>` would do: whatever else survives is an orphan.
"""

import os
import re
import signal

import psutil

from tests.crash_support import CLI_RUN, kill_group, run_env, spawn, wait_for
from tests.synthetic import csv_run_args, write_planted_csv


def _args(ratings, artifacts, lightgcn_rates: str) -> list[str]:
    return [
        *CLI_RUN,
        *csv_run_args(ratings, "1"),
        "--models",
        "popularity,lightgcn",
        "--no-semantic",
        "--max-epochs",
        "2",
        "--parallel-folds",
        "1",
        "--k",
        "5",
        "--set",
        "evaluation.n_recommendations=10",
        "--set",
        "models.lightgcn.num_layers=[1]",
        "--set",
        f"models.lightgcn.learning_rate={lightgcn_rates}",
        "--set",
        "models.lightgcn.n_trials=400",
        "--set",
        "models.training.tuning.pruning=false",
        "--artifacts-dir",
        str(artifacts),
        "--run-name",
        "midfold",
    ]


def _env(home):
    env = run_env(home, "http://127.0.0.1:9")
    env.pop("E2EP_LLM_MODEL")
    return env


def _servers_of(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "e2ep.prefect_server" in " ".join(p.cmdline())]


def _prefect_servers_of(home) -> list[psutil.Process]:
    """Any Prefect server (ours, or one Prefect started on its own) of a run with this E2EP_HOME."""
    found = []
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            if re.search(r"uvicorn|e2ep\.prefect_server", " ".join(p.info["cmdline"] or [])) and (
                p.info["environ"] or {}
            ).get("E2EP_HOME") == str(home):
                found.append(p)
        except psutil.Error:
            continue
    return found


def _gone_within(procs: list[psutil.Process], timeout: float) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return not alive


def test_kill_9_mid_fold_keeps_finished_training_and_leaves_no_server(tmp_path):
    ratings = write_planted_csv(tmp_path, n_users=12, n_items=16, per_user=8)
    home, artifacts = tmp_path / "home", tmp_path / "artifacts"
    # LightGCN's grid of 400 learning rates keeps fold 1 busy long after popularity has finished.
    slow = "[" + ",".join(f"{0.001 + i * 1e-5:.5f}" for i in range(400)) + "]"
    log = tmp_path / "first.log"
    first = spawn(_args(ratings, artifacts, slow), _env(home), log)
    try:
        wait_for(lambda: "train-popularity-fold1' - Finished in state Completed" in log.read_text(), first, log, 240)
        # Durable: popularity's cached result is on disk while the fold is still training LightGCN.
        wait_for(lambda: any((home / "results").glob("*")), first, log, 30)
        assert first.poll() is None and "fold 1 lightgcn:" not in log.read_text()
        servers = _servers_of(first.pid)
        assert len(servers) == 1 and servers[0].is_running()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert _gone_within(servers, 5), "the run's Prefect server outlived it"
        assert not _prefect_servers_of(home), "a Prefect server of the run is still running"
    finally:
        kill_group(first)
    trained = {p.name: p.stat().st_ino for p in (home / "work" / "recommendations").glob("popularity-fold1-*")}
    assert len(trained) == 1

    second_log = tmp_path / "second.log"
    second = spawn(_args(ratings, artifacts, "[0.01]"), _env(home), second_log)
    try:
        assert second.wait(timeout=300) == 0, second_log.read_text()[-3000:]
    finally:
        kill_group(second)
    text = second_log.read_text()
    assert "train-popularity-fold1' - Finished in state Cached" in text
    assert not re.search(r"fold 1 popularity:", text) and "fold 1 lightgcn:" in text
    now = {p.name: p.stat().st_ino for p in (home / "work" / "recommendations").glob("popularity-fold1-*")}
    assert now == trained, "popularity's recommendations were rewritten"
    assert (artifacts / "midfold" / "summary.md").is_file()
