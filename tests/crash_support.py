"""Helpers for the crash tests: an always-valid profile reply for the LLM stand-in, subprocesses in their own
process group (so SIGKILL takes the whole run, Prefect's server included) and their environment."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from e2ep.llm.gateway import PROBE, cache_key
from tests.prefect_db import seed_prefect_home

REPO = Path(__file__).resolve().parents[1]
MODEL = "openai/stub-model"
CLI_RUN = ["-m", "app.cli", "run"]
"""How the crash tests start `e2ep run`: in a subprocess of its own."""


def profile_reply(messages: list[dict]) -> str:
    """A schema-valid profile naming a digest of the request: deterministic, so reruns ask the same prompts."""
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:10]
    return (
        f"# Profile {digest}\n\n## Overview\nAbout {digest}.\n\n## Attributes\n- Genre: Drama\n- Tags: heist\n\n"
        f"## Description\nLonger {digest}.\n\n## Dislikes\nSlow pacing.\n"
    )


def prompt_keys(requests: list[dict]) -> list[str]:
    """The gateway's cache key of each request the stand-in received: its messages and generation parameters
    (everything in the body but the messages and the provider's model name). The preflight's probe, sent once
    per process and never memoised, is left out."""
    return [
        cache_key(MODEL, body["messages"], {k: v for k, v in body.items() if k not in ("messages", "model")})
        for body in requests
        if body["messages"] != PROBE
    ]


def run_env(home: Path, api_base: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_HOME", "PREFECT_LOCAL_STORAGE_PATH", "PREFECT_API_URL")
    }
    env.update(
        E2EP_HOME=str(home),
        E2EP_LLM_MODEL=MODEL,
        OPENAI_API_KEY="sk-test",
        OPENAI_API_BASE=api_base,
        PYTHONPATH=str(REPO),
        PREFECT_LOGGING_LEVEL="INFO",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        HF_HUB_OFFLINE="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # A loaded machine can take longer than the default 20 s to start Prefect's local server.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    if args[:3] == CLI_RUN:  # the run's own Prefect server starts on a migrated database
        seed_prefect_home(Path(env["E2EP_HOME"]) / "prefect")
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process and everything it started (same session); reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    try:  # children of an already-exited leader may linger in its group
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) early:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
