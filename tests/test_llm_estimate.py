"""The LLM cost estimate against what the stand-in server (e2ep/testing/llm_standin.py) then receives, the run-wide
caps, and the seeded user samples of the paid stages."""

import hashlib
import json
import re

import numpy as np
import polars as pl
import pytest

from e2ep.llm import LLMConfig, LLMGateway
from e2ep.llm.budget import BudgetExceeded, spend_cap
from e2ep.llm.estimate import Estimator
from e2ep.testing.llm_standin import StubLLM
from rerank.config import RerankConfig
from rerank.estimate import rerank_estimate, strategy_calls
from rerank.run import make_judge, rerank_recommendations
from rerank.strategies import max_bst_comparisons
from semantic.profiles import ProfilesConfig, item_profiles, user_profiles
from semantic.profiles.estimate import item_profiles_estimate, user_profiles_estimate
from tests.profiles_fakes import fold, items_frame
from tests.rerank_fakes import base_recs, make_inputs

KEY_ENV = "E2EP_TEST_ESTIMATE_KEY"


def profile_reply(messages):
    digest = hashlib.sha256(messages[-1]["content"].encode()).hexdigest()[:10]
    return (
        f"# Profile {digest}\n\n## Overview\nAbout {digest}.\n\n## Attributes\n- Genre: Drama\n- Tags: heist\n\n"
        f"## Description\nLonger {digest}.\n\n## Dislikes\nSlow pacing.\n"
    )


def judge_reply(messages):
    """A consistent judge that likes higher item indices (orders, choices, scores, explanations)."""
    task = messages[-1]["content"]
    ids = [int(i) for i in re.findall(r"\bM(\d+)\b", task.rsplit("\n\n", 1)[-1])]
    if "Now explain" in task:
        return json.dumps({f"M{i}": "Fits the viewer's taste." for i in ids})
    if "Which of the two" in task:
        return f"M{max(ids[:2])}"
    if "Rate how well" in task:
        return "\n".join(f"M{i}: {min(100, 3 * i)}" for i in dict.fromkeys(ids))
    if (
        any(m["role"] == "system" and "movie-taste profiles" in m["content"] for m in messages)
        or "Write the profile" in task
    ):
        return profile_reply(messages)
    return " > ".join(f"M{i}" for i in sorted(set(ids), reverse=True))


@pytest.fixture()
def stub(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with StubLLM(reply=judge_reply) as server:
        yield server


def llm_config(stub, tmp_path, **kw) -> LLMConfig:
    settings = dict(
        model="openai/stub-model",
        api_base=stub.api_base,
        api_key_env=KEY_ENV,
        cache_dir=str(tmp_path / "llm-cache"),
        max_retries=0,
        concurrency=4,
        preflight_call=False,
    )  # the probe request is not part of any stage's estimate
    return LLMConfig(**{**settings, **kw})


def rated_fold(n_users=7, n_items=30, per_user=16, seed=0):
    """Users with 0 to 16 ratings spread over 1-5 stars, so their profiles take 0 to 4 turns."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        k = min(per_user, 2 * u + 1) if u else 0
        for t, i in enumerate(rng.choice(n_items, k, replace=False)):
            rows.append((u, int(i), float(rng.integers(1, 6)), t))
    rows.append((0, 0, 3.0, 0))  # user 0: one neutral rating, no turn at all
    return fold(rows)


def sent(stub) -> list[list[dict]]:
    return [r["messages"] for r in stub.requests]


def test_profile_estimates_equal_the_requests_the_standin_receives(stub, tmp_path):
    cfg, items, f = ProfilesConfig(backend="llm"), items_frame(12), rated_fold()
    llm = llm_config(stub, tmp_path)
    est = Estimator(llm)
    item_row = item_profiles_estimate(est, items, cfg)
    user_row = user_profiles_estimate(est, f, items, cfg, n_users=8)
    assert item_row.basis == "prompts" and item_row.calls == 12 and item_row.cached_calls == 0
    assert user_row.calls > 7  # several users need more than one turn
    est.close()

    with LLMGateway(llm) as gw:
        item_profiles(items, cfg, gateway=gw)
        assert stub.count == item_row.calls
        items_sent = sent(stub)
        stub.reset()
        result = user_profiles(f, items, cfg, n_users=8, gateway=gw)
    assert stub.count == user_row.calls == result.counts["llm_turns"]
    # The exact prompts: every item prompt, and every first turn, is what the estimate counted.
    from semantic.profiles.items import item_prompt, normalise_items

    assert sorted(map(json.dumps, items_sent)) == sorted(
        json.dumps(item_prompt(r)) for r in normalise_items(items).to_dicts()
    )

    # Now everything is in the memo: the estimate finds it, free, and follows the stored answers turn by turn.
    again = Estimator(llm)
    item_again, user_again = item_profiles_estimate(again, items, cfg), user_profiles_estimate(again, f, items, cfg, 8)
    again.close()
    assert (item_again.calls, item_again.cached_calls) == (0, 12)
    assert (user_again.calls, user_again.cached_calls) == (0, user_row.calls)
    assert item_again.cost_usd == 0.0 and user_again.prompt_tokens == 0


def test_profiles_max_users_writes_a_seeded_sample_and_labels_the_rest(stub, tmp_path):
    cfg, items = ProfilesConfig(backend="llm", max_users=3, sample_seed=4), items_frame(12)
    llm = llm_config(stub, tmp_path)
    est = Estimator(llm)
    rows = {n: user_profiles_estimate(est, rated_fold(seed=n), items, cfg, n_users=8) for n in (0, 1)}
    est.close()
    with LLMGateway(llm) as gw:
        frames = {}
        for n in (0, 1):
            stub.reset()
            frames[n] = user_profiles(rated_fold(seed=n), items, cfg, n_users=8, gateway=gw).frame
            assert stub.count == rows[n].calls
    # The same users are written by the LLM in every fold; the others are labelled templates.
    written = [set(f.filter(pl.col("profile_source") == "llm")["user_idx"]) for f in frames.values()]
    assert written[0] == written[1] and 0 < len(written[0]) <= 3
    assert set(frames[0]["profile_source"]) <= {"llm", "template_unsampled", "minimal"}
    assert "template_unsampled" in set(frames[0]["profile_source"])


@pytest.mark.parametrize("strategy", ["prompt", "bst", "batch", "relevancy"])
def test_rerank_estimate_bounds_the_calls_the_standin_receives(stub, tmp_path, strategy):
    inputs, recs = make_inputs(n_users=8, n_items=40), base_recs(n_users=8, n_items=40, length=25)
    cfg = RerankConfig(base_model="x", judge="llm", pool_size=20, strategies=[strategy])
    llm = llm_config(stub, tmp_path)
    train = pl.DataFrame(
        {
            "user_idx": [u for u in range(8) for _ in range(3)],
            "item_idx": [i for u in range(8) for i, _ in inputs.liked[u]],
            "rating": [5.0] * 24,
            "timestamp": list(range(24)),
        }
    )
    est = Estimator(llm)
    row = rerank_estimate(
        est, strategy, cfg, train, inputs.user_profiles, inputs.item_profiles, list(range(8)), 4.0, f"rerank_{strategy}"
    )
    est.close()
    judge = make_judge(cfg, inputs, llm, stage=f"rerank_{strategy}")
    try:
        rerank_recommendations(recs, strategy, judge, inputs, cfg, workers=4)
    finally:
        judge.gateway.close()
    bound = row.upper_bound if row.upper_bound is not None else row.calls
    assert row.basis == "formula" and stub.count <= bound
    if strategy in ("prompt", "relevancy"):
        assert stub.count == row.calls == bound  # exact formulas
    else:
        assert abs(stub.count - row.calls) <= 0.08 * row.calls  # the expectation, a few users only
    if strategy == "bst":
        assert bound == 8 * (max_bst_comparisons(20) + 1)


def test_call_formulas():
    cfg = RerankConfig(base_model="x")
    assert strategy_calls("relevancy", cfg, 20).bound == 4 * 3 + 1
    assert strategy_calls("prompt", cfg, 20).expected == 2
    bst = strategy_calls("bst", cfg, 20)
    assert bst.bound == 69 + 1 and 60 < bst.expected < bst.bound
    both = strategy_calls("bst", cfg.model_copy(update={"bst_both_orders": True, "explanations": False}), 20)
    assert both.bound == 2 * 69
    batch = strategy_calls("batch", cfg, 20)
    assert batch.expected <= batch.bound


def test_crossing_the_cap_keeps_the_answers_and_stops(stub, tmp_path):
    llm = llm_config(stub, tmp_path, concurrency=1)
    prompts = [f"question {i}" for i in range(6)]
    with spend_cap(tmp_path / "spend", 3, None) as cap, LLMGateway(llm) as gw:
        with pytest.raises(BudgetExceeded, match="llm.max_calls = 3"):
            gw.complete_many(prompts, stage="s", return_exceptions=True)
        assert stub.count == 3 and cap.state()["calls"] == 3
        with pytest.raises(BudgetExceeded):
            gw.complete("question 9")
        assert stub.count == 3
        assert gw.complete(prompts[0]).cached  # memo hits are free, even at the cap
    # The answered calls are in the memo: a later run (no cap) pays only for the rest.
    with LLMGateway(llm) as gw:
        gw.complete_many(prompts)
    assert stub.count == 6


def test_cli_refuses_a_run_over_the_cap_and_estimate_prints_the_table(stub, tmp_path, monkeypatch, capsys):
    from app.cli import main
    from tests.synthetic import csv_run_args, write_planted_csv

    monkeypatch.setenv("E2EP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("E2EP_LLM_MODEL", "openai/stub-model")
    ratings = write_planted_csv(tmp_path)
    base = [
        *csv_run_args(ratings, "1"),
        "--models",
        "bpr-mf",
        "--set",
        f"llm.api_base={stub.api_base}",
        "--set",
        f"llm.api_key_env={KEY_ENV}",
        "--set",
        "llm.preflight_call=false",
        "--set",
        "rerank.base_model=bpr-mf",
        "--set",
        'rerank.strategies=["relevancy"]',
    ]
    assert main(["estimate", *base, "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    stages = [s["stage"] for s in table["stages"]]
    assert stages == [
        "item_profiles",
        "user_profiles fold 1",
        "rerank_relevancy fold 1",
        "rerank_relevancy_validation fold 1",
    ]
    # Fusion selection scores validation users' pools like test users' (relevancy: exact, one pool's calls each).
    test_row, validation_row = table["stages"][2], table["stages"][3]
    assert 0 < validation_row["calls"] <= test_row["calls"]
    calls = table["total"]["calls"]

    code = main(["run", *base, "--set", f"llm.max_calls={calls - 1}", "--artifacts-dir", str(tmp_path / "art")])
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("e2ep: error:")]
    assert code == 2 and len(errors) == 1 and "llm.max_calls" in errors[0] and "nothing was sent" in errors[0]
    assert "| item_profiles |" in out  # the estimate is shown with the refusal
    assert stub.count == 0


def test_a_run_crossing_the_cap_midway_stops_with_its_answers_kept(stub, tmp_path, monkeypatch, capsys):
    """Every item's first answer breaks the schema, so each costs a repair request the estimate cannot foresee:
    the run starts (estimate = cap) and reaches the cap during the item profiles."""
    from app.cli import main
    from tests.synthetic import csv_run_args, write_planted_csv

    def repairing(messages):
        if "Write the profile" in messages[1]["content"] and len(messages) == 2:
            return "not the schema"
        return profile_reply(messages)

    stub.reply = repairing
    monkeypatch.setenv("E2EP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("E2EP_LLM_MODEL", "openai/stub-model")
    ratings = write_planted_csv(tmp_path)
    ids = sorted(set(pl.read_csv(ratings)["item_id"]))
    items = tmp_path / "items.csv"
    pl.DataFrame({"item_id": ids, "title": [f"Movie {i} (1995)" for i in ids]}).write_csv(items)
    base = [
        *csv_run_args(ratings, "1"),
        "--items",
        str(items),
        "--models",
        "popularity",
        "--set",
        f"llm.api_base={stub.api_base}",
        "--set",
        f"llm.api_key_env={KEY_ENV}",
        "--set",
        "llm.max_retries=0",
        "--set",
        "profiles.max_users=1",
        "--set",
        "rerank.strategies=[]",
        "--set",
        "llm.preflight_call=false",
    ]
    assert main(["estimate", *base, "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    calls, n_items = table["total"]["calls"], table["stages"][0]["calls"]
    assert n_items == len(ids) and calls < 2 * n_items  # the repairs will cross the cap within the item profiles

    code = main(["run", *base, "--set", f"llm.max_calls={calls}", "--artifacts-dir", str(tmp_path / "art")])
    _, err = capsys.readouterr()
    assert code == 2 and err.strip().splitlines()[-1].startswith("e2ep: error: LLM call cap reached")
    assert stub.count == calls  # not one request past the cap
    # The answers bought before the stop are in the memo: the next estimate counts them as free.
    main(["estimate", *base, "--json"])
    items = json.loads(capsys.readouterr().out)["stages"][0]
    assert 0 < items["cached_calls"] <= calls // 2 and items["calls"] == n_items - items["cached_calls"]
