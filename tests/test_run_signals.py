"""SIGINT and SIGTERM stop a real `e2ep run` within seconds, with exit status 130 / 143: during an LLM stage whose
calls hang (answered calls stay in the memo, calls in flight are not waited for) and during training."""

import os
import signal
import time

import diskcache

from e2ep.testing.llm_standin import StubLLM
from tests.crash_support import CLI_RUN, kill_group, profile_reply, prompt_keys, run_env, spawn, wait_for
from tests.synthetic import csv_run_args, write_planted_csv

ANSWERED = 12  # the stand-in answers this many requests (the preflight probe included), then every one hangs


def run_args(ratings, tmp_path, *extra):
    return [
        *CLI_RUN,
        *csv_run_args(ratings, "1"),
        "--artifacts-dir",
        str(tmp_path / "artifacts"),
        *extra,
    ]


def stop(proc, sig, log) -> float:
    """Send `sig` to the run alone (not its group: Prefect's server must be stopped by the run) and time its exit."""
    sent = time.monotonic()
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    print(f"\n{sig.name}: exit {proc.returncode} after {time.monotonic() - sent:.1f} s")
    return time.monotonic() - sent


def test_sigint_during_an_llm_stage_stops_the_run_and_keeps_answered_calls(tmp_path):
    ratings = write_planted_csv(tmp_path, n_users=12, n_items=16, per_user=8)
    home = tmp_path / "home"
    with StubLLM(reply=profile_reply, hang_s=120) as stub:
        stub.inject = lambda body, n: "hang" if n > ANSWERED else None
        log = tmp_path / "run.log"
        proc = spawn(
            run_args(ratings, tmp_path, "--models", "popularity", "--profiles", "llm"),
            run_env(home, stub.api_base),
            log,
        )
        try:
            wait_for(lambda: stub.count > ANSWERED, proc, log, 240)  # calls now hang in flight
            seconds = stop(proc, signal.SIGINT, log)
        finally:
            kill_group(proc)
        answered = set(prompt_keys(stub.requests[:ANSWERED]))
    text = log.read_text()
    assert proc.returncode == 130, text[-3000:]
    assert "e2ep: stopped by SIGINT" in text and "Traceback" not in text
    assert seconds < 30, text[-3000:]  # stops rather than waiting for hung calls (the time is printed above)
    with diskcache.Cache(str(home / "llm-cache")) as cache:
        assert answered <= set(cache.iterkeys())
    assert not (tmp_path / "artifacts").exists()


def test_sigterm_during_training_stops_the_run(tmp_path):
    ratings = write_planted_csv(tmp_path, n_users=12, n_items=16, per_user=8)
    log = tmp_path / "run.log"
    args = run_args(
        ratings,
        tmp_path,
        "--models",
        "bpr-mf",
        "--no-semantic",
        "--max-epochs",
        "1000000",
        "--set",
        "models.training.patience=1000000",
    )
    proc = spawn(args, run_env(tmp_path / "home", "http://127.0.0.1:9/v1"), log)
    try:
        wait_for(lambda: "Beginning subflow run 'fold-1'" in log.read_text(), proc, log, 240)
        time.sleep(3)  # a million epochs: still training
        seconds = stop(proc, signal.SIGTERM, log)
    finally:
        kill_group(proc)
    text = log.read_text()
    assert proc.returncode == 143, text[-3000:]
    assert "train-bpr-mf-fold1' - Crash detected" in text and "e2ep: stopped by SIGTERM" in text
    assert seconds < 30, text[-3000:]
