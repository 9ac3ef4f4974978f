"""Two runs sharing one LLM cache at the same time: each distinct prompt is sent once, both get the same answers,
and a lock holder killed mid-call holds nobody up."""

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl

from e2ep.llm import LLMConfig, LLMGateway
from e2ep.testing.llm_standin import StubLLM
from tests.crash_support import REPO, kill_group, profile_reply, prompt_keys, run_env, spawn, wait_for

N_ITEMS = 12


def test_two_processes_on_one_cache_send_each_prompt_once(tmp_path):
    with StubLLM(reply=profile_reply, latency_s=0.2) as stub:
        env = run_env(tmp_path / "home", stub.api_base)
        workers = []
        try:
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                log = tmp_path / f"{name}.log"
                workers.append((spawn(["-m", "tests.llm_worker", str(tmp_path / name), str(N_ITEMS)], env, log), log))
            for (proc, log), name in zip(workers, "ab", strict=True):
                wait_for(lambda n=name: (tmp_path / n / "ready").exists(), proc, log, 120)
            (tmp_path / "go").touch()  # both start asking at the same moment
            for proc, log in workers:
                assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
        finally:
            for proc, _ in workers:
                kill_group(proc)
        keys = prompt_keys(stub.requests)

    assert len(keys) == len(set(keys)) == N_ITEMS, "every distinct prompt sent exactly once"
    a, b = (pl.read_parquet(tmp_path / n / "profiles.parquet") for n in "ab")
    assert a.equals(b) and set(a["profile_source"]) == {"llm"}
    usage = [json.loads((tmp_path / n / "usage.json").read_text()) for n in "ab"]
    # Each process asked every item; together they paid for each once, the rest came from the shared cache.
    assert sum(u["calls"] for u in usage) == N_ITEMS and sum(u["cache_hits"] for u in usage) == N_ITEMS


def test_lock_of_a_killed_holder_is_released(tmp_path, monkeypatch, caplog):
    """A process killed while holding a key's lock (as if mid-call) does not hold up the next caller of that key."""
    with StubLLM(reply=profile_reply) as stub:
        env = run_env(tmp_path / "home", stub.api_base)
        ready = tmp_path / "holding"
        code = (
            "import time, pathlib\nfrom e2ep.llm import LLMGateway\ngateway = LLMGateway()\n"
            "with gateway.memo.lock(gateway.key_for('same')):\n"
            f"    pathlib.Path({str(ready)!r}).touch()\n    time.sleep(120)\n"
        )
        holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                assert holder.poll() is None and time.monotonic() < deadline, "holder never took the lock"
                time.sleep(0.02)
            os.killpg(holder.pid, signal.SIGKILL)
        finally:
            kill_group(holder)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        # Short timeouts: were the dead holder's lock still held, this caller would give up on it after 2 s and
        # say so in the log.
        config = LLMConfig(timeout_s=1, max_retries=0, backoff_max_s=0, retry_after_max_s=0)
        with caplog.at_level("WARNING", logger="e2ep.llm"), LLMGateway(config) as gateway:
            result = gateway.complete("same")
    assert not result.cached and result.text == profile_reply([{"role": "user", "content": "same"}])
    assert stub.count == 1 and "held for over" not in caplog.text
