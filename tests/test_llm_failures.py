"""A broken LLM fails loudly and fast, and a rerun after LLM failures costs nothing: the preflight's real request,
stage stops (non-retryable errors, failures in a row, an outage), the fallback share, memoised failures."""

from __future__ import annotations

import hashlib
import json
import logging
import socket

import diskcache
import polars as pl
import pytest

from app.cli import main
from e2ep.llm import LLMConfig, LLMFallbackError, LLMGateway, LLMStageStopped, check_fallback_share, report_retried
from e2ep.testing.llm_standin import StubLLM
from rerank.config import RerankConfig
from rerank.run import make_judge, rerank_recommendations
from semantic.profiles import ProfilesConfig, item_profiles
from tests.crash_support import profile_reply
from tests.profiles_fakes import items_frame
from tests.rerank_fakes import base_recs, make_inputs
from tests.synthetic import write_planted_csv
from tests.test_rerank_llm import honest_reply

KEY_ENV = "E2EP_TEST_FAILURE_KEY"


@pytest.fixture()
def stub(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with StubLLM(reply=profile_reply) as server:
        yield server


def settings(api_base: str, tmp_path, **overrides) -> LLMConfig:
    base = dict(
        model="openai/stub",
        api_base=api_base,
        api_key_env=KEY_ENV,
        cache_dir=str(tmp_path / "cache"),
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        timeout_s=5.0,
        preflight_call=False,
    )
    return LLMConfig(**{**base, **overrides})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def cached_entries(tmp_path) -> list[dict]:
    with diskcache.Cache(str(tmp_path / "cache")) as cache:
        return [cache[k] for k in cache]


@pytest.mark.parametrize("broken", ["401", "404", "closed-port"])
def test_preflight_stops_the_run_with_one_line_before_any_work(broken, stub, tmp_path, monkeypatch, capsys):
    ratings = write_planted_csv(tmp_path, n_users=6, n_items=8, per_user=4)
    api_base = f"http://127.0.0.1:{closed_port()}/v1" if broken == "closed-port" else stub.api_base
    stub.fail(*[broken] * 3 if broken != "closed-port" else [])
    home = tmp_path / "home"
    for name, value in {
        "E2EP_HOME": str(home),
        "E2EP_LLM_MODEL": "openai/stub-model",
        "OPENAI_API_KEY": "sk-x",
        "OPENAI_API_BASE": api_base,
        "PREFECT_HOME": str(home / "prefect"),
    }.items():
        monkeypatch.setenv(name, value)
    code = main(
        [
            "run",
            "--dataset",
            "csv",
            "--ratings",
            str(ratings),
            "--profiles",
            "llm",
            "--artifacts-dir",
            str(tmp_path / "artifacts"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("e2ep: error: LLM preflight failed:"), err
    expected = {"401": "API key was refused", "404": "not found", "closed-port": "cannot connect"}[broken]
    assert expected in err and api_base in err
    assert stub.count == (0 if broken == "closed-port" else 1)  # one tiny request, not one per item
    assert not (tmp_path / "artifacts").exists() and not (home / "work" / "semantic").exists()


@pytest.mark.parametrize("status", ["401", "403", "400"])
def test_a_non_retryable_error_stops_the_stage_at_once(status, stub, tmp_path):
    stub.fail(status)
    gateway = LLMGateway(settings(stub.api_base, tmp_path, concurrency=1))
    with pytest.raises(LLMStageStopped, match=f"LLM stage item_profiles stopped: .*{status}"):
        item_profiles(items_frame(30), ProfilesConfig(backend="llm"), gateway=gateway)
    assert stub.count == 1  # the other 29 items are never sent
    assert cached_entries(tmp_path) == []


def test_failures_in_a_row_stop_the_stage_and_retries_are_warnings(stub, tmp_path, caplog):
    stub.fail(*["500"] * 50)
    gateway = LLMGateway(settings(stub.api_base, tmp_path, concurrency=1, max_retries=1, max_consecutive_failures=3))
    with caplog.at_level(logging.WARNING, logger="e2ep.llm"):
        with pytest.raises(LLMStageStopped, match="3 requests in a row failed.*last: LLM call failed after 2"):
            item_profiles(items_frame(30), ProfilesConfig(backend="llm"), gateway=gateway)
    assert stub.count == 3 * 2  # three units, each tried twice, then the stage stops
    retries = [r for r in caplog.records if "retry 1 of 1" in r.getMessage()]
    assert len(retries) == 3 and all(r.levelno == logging.WARNING for r in retries)
    # Units that failed in the outage are not memoised as failures: a rerun asks them again.
    assert cached_entries(tmp_path) == []


def test_a_dead_endpoint_stops_the_stage_after_the_outage_window(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    gateway = LLMGateway(
        settings(
            f"http://127.0.0.1:{closed_port()}/v1",
            tmp_path,
            concurrency=2,
            max_retries=50,
            backoff_base_s=0.05,
            backoff_max_s=0.2,
            max_consecutive_failures=1000,
            max_outage_s=0.5,
        )
    )
    with pytest.raises(LLMStageStopped, match=r"no answer for .*llm.max_outage_s = 0.5.*cannot connect"):
        item_profiles(items_frame(10), ProfilesConfig(backend="llm"), gateway=gateway)
    assert gateway.usage_summary()["stages"]["item_profiles"]["calls"] < 50  # not 10 items x 51 attempts


def test_fallback_share_is_said_and_above_the_limit_fails(caplog):
    cfg = LLMConfig(max_fallback_share=0.05)
    assert check_fallback_share("item-profiles", 0, 100, cfg, "template profiles") is None
    with caplog.at_level(logging.WARNING, logger="e2ep.llm"):
        line = check_fallback_share("item-profiles", 5, 100, cfg, "template profiles")
    assert line == "item-profiles: 5 of 100 LLM requests (5.0%) fell back to template profiles"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [line]
    with pytest.raises(LLMFallbackError, match=r"6 of 100 .*above llm.max_fallback_share = 5%.*--retry-failed"):
        check_fallback_share("item-profiles", 6, 100, cfg, "template profiles")
    assert report_retried("item-profiles", 0) is None
    assert report_retried("item-profiles", 3) == (
        "item-profiles: asked the LLM again for 3 unit(s) whose failure was memoised (llm.retry_failed)"
    )


def digit(messages) -> int:
    """A stable pseudo-random digit per request (its first user turn), so faults do not depend on arrival order."""
    first = next(m["content"] for m in messages if m["role"] == "user")
    return int(hashlib.sha256(first.encode()).hexdigest(), 16) % 10


def faulty_reply(messages) -> str:
    """Garbage for a tenth of the requests (their repair too); otherwise a profile, or the honest judge's answer."""
    if digit(messages) == 4:
        return "I'd rather not use your format."
    first = next(m["content"] for m in messages if m["role"] == "user")
    return profile_reply(messages) if "Write the profile" in first else honest_reply(messages)


def inject_faults(stub: StubLLM):
    """~30 % of requests meet a fault: a tenth on every attempt (the unit fails), a fifth on the first attempt
    only (a retry succeeds); 429, 500, a dropped connection and a non-JSON body."""
    attempts: dict[str, int] = {}
    kinds = ["429", "500", "drop", "malformed"]

    def inject(body: dict, n: int) -> str | None:
        key = json.dumps(body["messages"], sort_keys=True)
        seen = attempts[key] = attempts.get(key, 0) + 1
        d = digit(body["messages"])
        if d == 3 or (d in (1, 2) and seen == 1):
            return kinds[n % len(kinds)]
        return None

    stub.inject = inject


def one_run(stub, tmp_path, **overrides):
    cfg = settings(
        stub.api_base,
        tmp_path,
        max_retries=1,
        concurrency=4,
        max_fallback_share=1.0,
        max_consecutive_failures=100,
        **overrides,
    )
    gateway = LLMGateway(cfg)
    items = item_profiles(items_frame(24), ProfilesConfig(backend="llm"), gateway=gateway)
    inputs, recs = make_inputs(n_users=16), base_recs(n_users=16, length=8)
    rr = RerankConfig(base_model="x", judge="llm", pool_size=6)
    judge = make_judge(rr, inputs, cfg, stage="rerank_prompt")
    reranked = rerank_recommendations(recs, "prompt", judge, inputs, rr, workers=4)
    usage = {"items": gateway.usage_summary()["total"], "rerank": judge.gateway.usage_summary()["total"]}
    gateway.close()
    judge.gateway.close()
    return items, reranked, usage


def test_a_rerun_after_faults_makes_no_call_and_reproduces_every_fallback(stub, tmp_path):
    stub.reply = faulty_reply
    inject_faults(stub)
    items, reranked, usage = one_run(stub, tmp_path)
    fallbacks = items.counts["template_fallback"]
    assert 0 < fallbacks < 24 and items.counts["llm"] == 24 - fallbacks
    assert reranked.cost["fallbacks"] > 0 and usage["items"]["retries"] > 0
    calls = stub.count

    again_items, again_reranked, again_usage = one_run(stub, tmp_path)
    assert stub.count == calls, "the second run must be answered (and fail) from the memo"
    assert again_items.frame.equals(items.frame) and again_items.counts == items.counts
    assert again_reranked.recommendations.equals(reranked.recommendations)
    assert again_reranked.explanations.equals(reranked.explanations)
    assert again_reranked.cost["fallbacks"] == reranked.cost["fallbacks"]
    assert again_usage["items"]["replayed_failures"] == fallbacks and again_usage["items"]["calls"] == 0

    # Asking the failed units again is a deliberate setting, counted; the answers already bought stay bought.
    stub.inject, stub.reply = None, profile_reply
    retried, _, retry_usage = one_run(stub, tmp_path, retry_failed=True)
    assert retry_usage["items"]["retried_failures"] == fallbacks and retried.counts["llm"] > items.counts["llm"]
    assert stub.count - calls <= 2 * (fallbacks + reranked.cost["fallbacks"])
    assert pl.Series(retried.frame["profile_source"]).to_list().count("template_fallback") < fallbacks
