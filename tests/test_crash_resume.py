"""A run killed with SIGKILL mid-way and started again repeats no answered LLM call and no finished training.

The experiment CLI runs in a subprocess (own E2EP_HOME) on a tiny CSV dataset with LLM profiles from the
stand-in server; folds run one after the other, so the kill lands after fold 1 was trained and evaluated and
while fold 2's user profiles are being written.
"""

import re

import diskcache
import polars as pl
import pytest

from e2ep.testing.llm_standin import StubLLM
from tests.crash_support import CLI_RUN, kill_group, profile_reply, prompt_keys, run_env, spawn, wait_for
from tests.synthetic import csv_run_args, write_planted_csv


@pytest.fixture()
def stub():
    with StubLLM(reply=profile_reply, latency_s=0.15) as server:
        yield server


def test_killed_run_resumes_without_repeating_calls_or_training(stub, tmp_path):
    ratings = write_planted_csv(tmp_path, n_users=12, n_items=16, per_user=8)
    home, artifacts = tmp_path / "home", tmp_path / "artifacts"
    args = [
        *CLI_RUN,
        *csv_run_args(ratings, "1,2"),
        "--models",
        "popularity,bpr-mf",
        "--profiles",
        "llm",
        "--max-epochs",
        "4",
        "--parallel-folds",
        "1",
        "--k",
        "5,10",
        "--set",
        "evaluation.n_recommendations=10",
        "--set",
        "rerank.strategies=[]",
        "--artifacts-dir",
        str(artifacts),
        "--run-name",
        "resumed",
    ]
    env = run_env(home, stub.api_base)
    metrics = home / "work" / "metrics"

    first = spawn(args, env, tmp_path / "first.log")
    try:
        # Fold 1 evaluated for both models (so trained and persisted before); then fold 2's LLM calls start.
        wait_for(lambda: len(list(metrics.glob("*-fold1-*-users.parquet"))) == 2, first, tmp_path / "first.log", 120)
        before_fold2 = stub.count
        wait_for(lambda: stub.count >= before_fold2 + 6, first, tmp_path / "first.log", 60)
    finally:
        kill_group(first)
    assert first.returncode == -9
    first_log = (tmp_path / "first.log").read_text()
    first_keys = prompt_keys(stub.requests)
    with diskcache.Cache(str(home / "llm-cache")) as cache:
        answered = set(cache.iterkeys())
    # The key mapping is right (every stored answer is one of the prompts sent), and some of fold 2's prompts
    # were answered before the kill: the rerun has something to skip, in the stage it must resume.
    assert answered <= set(first_keys) and len(answered) > before_fold2
    trained = {p.name: p.stat().st_ino for p in (home / "work" / "recommendations").glob("*-fold1-*.parquet")}
    assert len(trained) == 2 and all(f"fold 1 {m}:" in first_log for m in ("popularity", "bpr-mf"))

    stub.reset()
    second = spawn(args, env, tmp_path / "second.log")
    try:
        assert second.wait(timeout=240) == 0, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        kill_group(second)
    second_log = (tmp_path / "second.log").read_text()
    second_keys = prompt_keys(stub.requests)
    distinct = set(first_keys) | set(second_keys)

    # No prompt answered before the kill is sent again; each remaining prompt is sent once.
    assert not answered & set(second_keys)
    assert len(second_keys) == len(set(second_keys)) <= len(distinct) - len(answered)
    assert second_keys, "the rerun finished fold 2's profiles through the model"
    # Fold 1's training is not redone (its task is served from Prefect's cache); fold 2's is done now.
    assert not re.search(r"fold 1 (popularity|bpr-mf):", second_log)
    assert "fold 2 bpr-mf:" in second_log and "Cached" in second_log
    now = {p.name: p.stat().st_ino for p in (home / "work" / "recommendations").glob("*-fold1-*.parquet")}
    assert now == trained, "fold 1's recommendation files were not rewritten"

    run = artifacts / "resumed"
    assert (run / "report.md").is_file() and (run / "summary.md").is_file()
    users = pl.read_parquet(run / "profiles" / "users-fold2.parquet")
    assert "llm" in set(users["profile_source"]) and "template_fallback" not in set(users["profile_source"])
