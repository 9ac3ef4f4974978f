"""The LLM gateway through the real litellm path, against the OpenAI-compatible stand-in in
e2ep/testing/llm_standin.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import diskcache
import pytest

from e2ep.errors import ConfigError, E2EPError
from e2ep.llm import LLMCallError, LLMConfig, LLMGateway, LLMOutputError, LLMResult, LLMStageStopped
from e2ep.llm.config import import_litellm
from e2ep.testing.llm_standin import StubLLM

MODEL = "openai/gpt-4o-mini"  # in litellm's local price list, so costs are non-zero
KEY_ENV = "E2EP_TEST_LLM_KEY"
SECRET = "sk-test-SECRET-never-cache-me-0123456789"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stub():
    with StubLLM() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(stub, monkeypatch):
    stub.reset()
    stub.latency_s, stub.reply = 0.0, lambda messages: f"echo: {messages[-1]['content']}"
    monkeypatch.setenv(KEY_ENV, SECRET)


def gateway(stub: StubLLM, tmp_path: Path, **overrides) -> LLMGateway:
    settings = dict(model=MODEL, api_base=stub.api_base, api_key_env=KEY_ENV, cache_dir=str(tmp_path / "cache"),
                    backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5.0)  # fmt: skip
    return LLMGateway(LLMConfig(**{**settings, **overrides}))


def test_plain_call_then_cached(stub, tmp_path):
    gw = gateway(stub, tmp_path)
    first = gw.complete("hello there", stage="s")
    assert (first.text, first.cached, stub.count) == ("echo: hello there", False, 1)
    assert stub.requests[0]["messages"] == [{"role": "user", "content": "hello there"}]
    assert stub.requests[0]["temperature"] == 0.0
    second = gw.complete([{"role": "user", "content": "hello there"}], stage="s")
    assert (second.text, second.cached, stub.count) == ("echo: hello there", True, 1)
    usage = gw.usage_summary()["stages"]["s"]
    assert (usage["requests"], usage["cache_hits"], usage["calls"]) == (2, 1, 1)
    # Another gateway (as another process would) on the same folder sees the answer; the endpoint is no key part.
    other = gateway(stub, tmp_path, api_base=stub.api_base.replace("127.0.0.1", "localhost"))
    assert other.complete("hello there").cached and stub.count == 1
    assert gw.complete("hello there", params={"temperature": 0.7}).cached is False  # params are part of the key


def test_rate_limit_honours_retry_after(stub, tmp_path):
    gw = gateway(stub, tmp_path)
    stub.fail("429", retry_after=1)
    started = time.monotonic()
    result = gw.complete("rate limited", stage="rl")
    assert time.monotonic() - started >= 0.95  # the backoff alone would wait at most 0.05 s
    assert (result.text, result.retries, stub.count) == ("echo: rate limited", 1, 2)
    usage = gw.usage_summary()["stages"]["rl"]
    assert (usage["calls"], usage["retries"], usage["failures"]) == (2, 1, 0)


@pytest.mark.parametrize(
    ("faults", "timeout_s"),
    [(("500", "500"), 5.0), (("hang",), 0.5), (("malformed", "drop", "503"), 5.0)],
    ids=["500-twice", "timeout", "malformed-drop-503"],
)
def test_transient_errors_are_retried(stub, tmp_path, faults, timeout_s):
    gw = gateway(stub, tmp_path, timeout_s=timeout_s)
    stub.fail(*faults)
    started = time.monotonic()
    result = gw.complete("flaky")
    assert result.text == "echo: flaky" and result.retries == len(faults)
    assert stub.count == len(faults) + 1
    assert time.monotonic() - started < 3
    assert gw.usage_summary()["total"]["retries"] == len(faults)


def test_retries_exhausted_fail_cleanly_and_the_failure_is_memoised(stub, tmp_path):
    gw = gateway(stub, tmp_path, max_retries=2)
    stub.fail("malformed", "500", "malformed")
    with pytest.raises(LLMCallError, match="after 3 attempts") as info:
        gw.complete("doomed", stage="x")
    assert isinstance(info.value, E2EPError) and stub.count == 3
    assert gw.usage_summary()["stages"]["x"]["failures"] == 1
    # A rerun reproduces the failure without a call; asking again is a deliberate setting.
    with pytest.raises(LLMCallError, match="memoised"):
        gateway(stub, tmp_path, max_retries=2).complete("doomed", stage="x")
    assert stub.count == 3
    retry = gateway(stub, tmp_path, retry_failed=True)
    assert retry.complete("doomed", stage="x").cached is False and stub.count == 4
    assert retry.usage_summary()["stages"]["x"]["retried_failures"] == 1
    assert gw.complete("doomed").cached is True and stub.count == 4  # the new answer replaced the failure


@pytest.mark.parametrize("status", ["401", "400", "404"])
def test_non_retryable_errors_stop_the_stage_at_once(stub, tmp_path, status):
    gw = gateway(stub, tmp_path)
    stub.fail(status)
    with pytest.raises(LLMStageStopped, match=f"LLM stage bad stopped: .*{status}") as info:
        gw.complete("no", stage="bad")
    assert "\n" not in str(info.value)
    usage = gw.usage_summary()["stages"]["bad"]
    assert stub.count == 1 and (usage["calls"], usage["retries"], usage["failures"]) == (1, 0, 1)
    with pytest.raises(LLMStageStopped):  # the rest of the stage is not even sent
        gw.complete("another", stage="bad")
    assert stub.count == 1 and gw.complete("fine", stage="other").text == "echo: fine"
    with diskcache.Cache(str(tmp_path / "cache")) as cache:
        assert len(cache) == 1  # a stage stop is not any unit's failure: nothing memoised for "no"


def parse_answer(text: str) -> int:
    """A validator: JSON object with an integer `answer`."""
    try:
        value = json.loads(text)["answer"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f'expected JSON like {{"answer": 1}}, got {text[:40]!r}') from exc
    if not isinstance(value, int):
        raise ValueError("answer must be an integer")
    return value


def test_invalid_answer_gets_one_repair(stub, tmp_path):
    stub.reply = lambda m: '{"answer": 42}' if "invalid because" in m[-1]["content"] else "forty-two"
    gw = gateway(stub, tmp_path)
    result = gw.complete("What is six times seven?", stage="v", validate=parse_answer)
    assert (result.value, result.text, result.repaired, stub.count) == (42, '{"answer": 42}', True, 2)
    repair = stub.requests[1]["messages"]
    assert [m["role"] for m in repair] == ["user", "assistant", "user"]
    assert repair[1]["content"] == "forty-two" and "expected JSON" in repair[2]["content"]
    again = gw.complete("What is six times seven?", stage="v", validate=parse_answer)
    assert (again.value, again.cached, stub.count) == (42, True, 2)  # the original key maps to the repaired answer
    usage = gw.usage_summary()["stages"]["v"]
    assert (usage["repairs"], usage["failures"], usage["prompt_tokens"]) == (1, 0, stub.usage.prompt_tokens)


def test_still_invalid_after_repair_raises_and_both_answers_are_kept(stub, tmp_path):
    stub.reply = lambda m: "no idea"
    gw = gateway(stub, tmp_path)
    with pytest.raises(LLMOutputError, match="invalid after one repair"):
        gw.complete("What is six times seven?", stage="v", validate=parse_answer)
    assert stub.count == 2 and gw.usage_summary()["stages"]["v"]["failures"] == 1
    with diskcache.Cache(str(tmp_path / "cache")) as cache:
        assert sorted(cache[k]["text"] for k in cache) == ["no idea", "no idea"]  # answer and repair, as bought
    # Bought answers are never bought again: the failure replays, and without a validator the text is fine.
    with pytest.raises(LLMOutputError, match="memoised"):
        gw.complete("What is six times seven?", stage="v", validate=parse_answer)
    assert gw.complete("What is six times seven?").text == "no idea" and stub.count == 2
    assert gw.usage_summary()["stages"]["v"]["replayed_failures"] == 1
    # A validator that now accepts the answer uses it; asking again is `retry_failed`.
    assert gw.complete("What is six times seven?", validate=str.upper).value == "NO IDEA" and stub.count == 2
    stub.reply = lambda m: '{"answer": 42}'
    retry = gateway(stub, tmp_path, retry_failed=True)
    assert retry.complete("What is six times seven?", validate=parse_answer).value == 42 and stub.count == 3


def test_complete_many_runs_in_parallel_and_in_order(stub, tmp_path):
    stub.latency_s = 0.2
    gw = gateway(stub, tmp_path, concurrency=8)
    prompts = [f"q{i}" for i in range(32)]
    started = time.monotonic()
    results = gw.complete_many(prompts, stage="many")
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 * 32 * 0.2, elapsed
    assert [r.text for r in results] == [f"echo: q{i}" for i in range(32)]
    assert stub.count == 32 and stub.max_in_flight <= 8 and not any(r.cached for r in results)
    rerun = gw.complete_many(prompts, stage="many")
    assert stub.count == 32 and all(r.cached for r in rerun)
    usage = gw.usage_summary()["stages"]["many"]
    assert (usage["requests"], usage["cache_hits"], usage["calls"]) == (64, 32, 32)


def test_complete_many_throughput_at_concurrency_16(stub, tmp_path):
    stub.latency_s = 0.2
    gw = gateway(stub, tmp_path, concurrency=16)
    gw.complete("warm-up")  # litellm's first call sets up its client
    started = time.monotonic()
    gw.complete_many([f"t{i}" for i in range(96)], stage="t")
    rate = 96 / (time.monotonic() - started)
    print(f"\nthroughput at concurrency 16, 200 ms latency: {rate:.1f} calls/s (ideal 80)")
    assert rate > 40


def test_complete_many_duplicates_and_errors(stub, tmp_path):
    gw = gateway(stub, tmp_path, concurrency=4)
    results = gw.complete_many(["a", "b", "a"], stage="d")
    assert [r.text for r in results] == ["echo: a", "echo: b", "echo: a"] and stub.count == 2
    assert [r.cached for r in results] == [False, False, True]
    stub.fail("500")
    flaky = gateway(stub, tmp_path, concurrency=4, max_retries=0)
    mixed = flaky.complete_many(["c", "d", "e"], stage="d", return_exceptions=True)
    assert sum(isinstance(r, LLMCallError) for r in mixed) == 1 and sum(isinstance(r, LLMResult) for r in mixed) == 2
    one = gateway(stub, tmp_path, concurrency=1, max_retries=0)
    stub.reset()
    stub.fail("500")
    with pytest.raises(LLMCallError):
        one.complete_many([f"f{i}" for i in range(10)])
    assert stub.count <= 2  # calls not yet started are dropped after the first failure
    stub.reset()
    stub.fail("401")
    with pytest.raises(LLMStageStopped):  # even when errors were asked for in the list
        gateway(stub, tmp_path, concurrency=1).complete_many([f"g{i}" for i in range(10)], return_exceptions=True)
    assert stub.count == 1


def test_accounting_matches_stub_and_holds_no_secret(stub, tmp_path):
    gw = gateway(stub, tmp_path, concurrency=4)
    gw.complete_many([f"profile user {i}" for i in range(6)], stage="profiles")
    gw.complete("rerank these items please", stage="rerank")
    gw.complete("rerank these items please", stage="rerank")
    summary = gw.usage_summary()
    total = summary["total"]
    assert (total["prompt_tokens"], total["completion_tokens"]) == (stub.usage.prompt_tokens,
                                                                    stub.usage.completion_tokens)  # fmt: skip
    assert (total["calls"], total["cache_hits"], summary["stages"]["rerank"]["requests"]) == (7, 1, 2)
    price = import_litellm().model_cost["gpt-4o-mini"]
    expected = (stub.usage.prompt_tokens * price["input_cost_per_token"]
                + stub.usage.completion_tokens * price["output_cost_per_token"])  # fmt: skip
    assert total["cost_usd"] == pytest.approx(expected, rel=1e-6) and total["cost_usd"] > 0
    written = gw.write_usage(tmp_path / "usage.json")
    assert json.loads(written.read_text()) == json.loads(json.dumps(summary))
    assert SECRET not in written.read_text() and SECRET not in repr(gw)
    with diskcache.Cache(str(tmp_path / "cache")) as cache:
        keys = list(cache)
        assert len(keys) == 7
        for key in keys:
            assert SECRET not in key and SECRET not in json.dumps(cache[key])
            assert set(cache[key]) >= {"text", "usage", "cost_usd"}


def test_preflight(stub, tmp_path, monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_API_BASE", "E2EP_LLM_MODEL"):
        monkeypatch.delenv(var, raising=False)
    offline = {"cache_dir": str(tmp_path), "preflight_call": False}  # settings only; no request sent
    with pytest.raises(ConfigError, match="unknown LLM model"):
        LLMGateway(LLMConfig(model="no-such-model-xyz", **offline)).preflight()
    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as info:
        LLMGateway(LLMConfig(model="openai/gpt-4.1-mini", **offline)).preflight()
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        LLMGateway(LLMConfig(model=MODEL, api_key_env="NOT_SET_ANYWHERE", **offline)).preflight()
    LLMGateway(LLMConfig(model="ollama/gemma3:4b", **offline)).preflight()  # local: no key needed
    local = LLMGateway(LLMConfig(model=MODEL, api_base=stub.api_base, cache_dir=str(tmp_path)))
    local.preflight()  # a local server needs no key; the gateway sends a placeholder (and one probe request)
    assert stub.count == 1 and stub.requests[0]["max_tokens"] == 1
    assert local.complete("keyless").text == "echo: keyless"
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    LLMGateway(LLMConfig(model="openai/gpt-4.1-mini", **offline)).preflight()


def test_no_model_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("E2EP_LLM_MODEL", raising=False)
    assert LLMGateway.from_config(LLMConfig()) is None and LLMGateway.from_config() is None
    with pytest.raises(ConfigError, match="no LLM configured"):
        LLMGateway.from_config(LLMConfig(), required=True)
    monkeypatch.setenv("E2EP_LLM_MODEL", "ollama/gemma3:4b")
    assert LLMGateway.from_config(LLMConfig(cache_dir=str(tmp_path))).model == "ollama/gemma3:4b"
    assert LLMGateway.from_config(LLMConfig(model=MODEL)).model == MODEL  # the config wins over the env


CRASH_SCRIPT = """
import sys
from e2ep.llm import LLMConfig, LLMGateway
gw = LLMGateway(LLMConfig(model=sys.argv[1], api_base=sys.argv[2], api_key_env=sys.argv[3], cache_dir=sys.argv[4],
                          concurrency=2))
gw.complete_many([f"crash {i}" for i in range(20)], stage="crash")
print("finished", flush=True)
"""


def test_killed_run_resumes_without_repeating_completed_calls(stub, tmp_path):
    stub.latency_s = 0.1
    cache_dir = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, MODEL, stub.api_base, KEY_ENV, str(cache_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while stub.count < 8 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL and b"finished" not in out, err.decode()[-2000:]
    with diskcache.Cache(str(cache_dir)) as cache:
        completed = len(cache)
    assert 0 < completed < 20
    stub.reset()
    results = gateway(stub, tmp_path).complete_many([f"crash {i}" for i in range(20)], stage="crash")
    assert stub.count == 20 - completed
    assert [r.text for r in results] == [f"echo: crash {i}" for i in range(20)]
    assert sum(r.cached for r in results) == completed


@pytest.mark.parametrize("cut", [0, 40], ids=["headers-only", "half-a-body"])
def test_a_request_cut_off_by_a_dying_client_is_not_recorded(stub, tmp_path, cut):
    """A client killed mid-send leaves a body shorter than its Content-Length: the stand-in records no request
    (crash tests compare the prompts it received before and after a kill)."""
    import socket

    body = json.dumps({"model": "stub-model", "messages": [{"role": "user", "content": "never finished"}]}).encode()
    with socket.create_connection(("127.0.0.1", stub.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:cut]
        )
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1024) == b""  # closed without an answer
    assert stub.count == 0 and stub.requests == []
    whole = gateway(stub, tmp_path).complete("finished", stage="cut")
    assert whole.text == "echo: finished" and stub.count == 1
