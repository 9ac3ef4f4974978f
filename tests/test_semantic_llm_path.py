"""The semantic stages on the real LLM path: litellm → the OpenAI-compatible stand-in server on 127.0.0.1.

Setting `E2EP_LLM_MODEL` (plus the provider's usual variables) is all it takes to switch from template to LLM
profiles; a rerun makes no call; answers that break the schema are repaired once, else fall back to templates.
"""

import hashlib

import polars as pl
import pytest

from data import Fold
from e2ep.llm import LLMFallbackError
from e2ep.testing.llm_standin import StubLLM
from flows.config import load_config, resolve_auto, semantic_settings
from tasks.data import DatasetRef, FoldRef
from tasks.semantic import StageRef, build_item_profiles, build_user_profiles
from tests.profiles_fakes import items_frame, ratings

SECRET = "sk-planted-secret-for-the-leak-check"


def schema_reply(messages):
    """A valid profile naming a digest of the request, except: Movie 3's first answer breaks the schema (the
    repair request fixes it) and Movie 5's answers always do."""
    user = messages[-1]["content"]
    first = next(m["content"] for m in messages if m["role"] == "user")
    repairing = any(m["role"] == "assistant" for m in messages)
    if "movie 5." in first or ("movie 3." in first and not repairing):
        return "I'd rather not use your format."
    digest = hashlib.sha256(user.encode()).hexdigest()[:10]
    return (
        f"# Profile {digest}\n\n## Overview\nAbout {digest}.\n\n## Attributes\n- Genre: Drama\n- Tags: heist\n\n"
        f"## Description\nLonger {digest}.\n\n## Dislikes\nSlow pacing.\n"
    )


@pytest.fixture()
def stub(monkeypatch, tmp_path):
    with StubLLM(reply=schema_reply) as server:
        monkeypatch.setenv("E2EP_LLM_MODEL", "openai/stub-model")
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("OPENAI_API_BASE", server.api_base)
        monkeypatch.setenv("E2EP_HOME", str(tmp_path / "home"))
        yield server


def write_inputs(tmp_path):
    """Item metadata, a dataset ref and one fold, as the flow's earlier stages would have written them."""
    from e2ep.store import write_parquet

    items = items_frame(8)
    metadata = StageRef(file=write_parquet(items, tmp_path / "meta.parquet"), report={})
    dataset_dir = tmp_path / "dataset"
    from data import build_dataset, save_dataset
    from data.parsing import RawTables

    raw = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2],
            "item_id": [0, 1, 2, 3, 4],
            "rating": [5.0, 4.0, 1.0, 5.0, 2.0],
            "timestamp": [1, 2, 3, 4, 5],
        }
    )
    save_dataset(build_dataset("csv", RawTables(ratings=raw, users=None, items=None), None), dataset_dir)
    dataset = DatasetRef(name="csv", directory=str(dataset_dir), digest="d", n_users=2, n_items=8)
    fold = Fold(
        1,
        ratings([(0, 0, 5, 1), (0, 1, 4, 2), (0, 2, 1, 3), (1, 3, 5, 4), (1, 4, 2, 5)], validation=True),
        ratings([(0, 5, 5, 6)]),
    )
    from data import save_fold

    save_fold(fold, tmp_path / "fold")
    return dataset, FoldRef(number=1, directory=str(tmp_path / "fold"), digest="f"), metadata


def test_env_model_switches_profiles_to_the_llm_and_reruns_cost_nothing(stub, tmp_path):
    profiles, llm = semantic_settings(resolve_auto(load_config()))
    assert profiles.backend == "llm" and llm.model == "openai/stub-model"
    dataset, fold, metadata = write_inputs(tmp_path)

    # One item of eight falls back: above the default 5 % that fails the stage, with the answers memoised.
    with pytest.raises(LLMFallbackError, match=r"item-profiles: 1 of 8 LLM requests \(12.5%\) fell back"):
        build_item_profiles(dataset, metadata, profiles, llm)
    assert stub.count == 1 + 8 + 2  # the preflight probe, one request per item, the two repair requests
    calls = stub.count

    llm = llm.model_copy(update={"max_fallback_share": 0.2})
    items = build_item_profiles(dataset, metadata, profiles, llm)
    assert stub.count == calls  # accepting the fallback costs no new call: the failure is memoised too
    frame = items.file.read_parquet()
    source = dict(zip(frame["item_idx"], frame["profile_source"], strict=True))
    assert source[3] == "llm" and source[5] == "template_fallback"  # repaired once vs. still invalid
    assert sum(s == "llm" for s in source.values()) == 7
    usage = items.report["llm_usage"]["total"]
    assert usage["replayed_failures"] == 1 and usage["failures"] == 1 and usage["calls"] == 0

    users = build_user_profiles(dataset, fold, metadata, profiles, llm)
    assert set(users.file.read_parquet()["profile_source"]) == {"llm"}
    calls = stub.count

    again = build_item_profiles(dataset, metadata, profiles, llm)
    build_user_profiles(dataset, fold, metadata, profiles, llm)
    assert stub.count == calls  # every answer and every failure comes from the memo
    assert again.file.read_parquet().equals(frame)

    # The key never reaches outputs, reports or cache keys.
    everything = [items.model_dump_json(), users.model_dump_json(), frame.write_csv()]
    assert not any(SECRET in text for text in everything)
