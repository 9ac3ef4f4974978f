"""API keys are named, never carried: a planted key reaches the LLM server and nothing else (run files, Prefect's
database, persisted results, caches, logs, flow run parameters, artifacts)."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest

from e2ep.errors import ConfigError
from e2ep.llm import LLMConfig, LLMGateway
from e2ep.runtime import e2ep_home
from e2ep.secrets import require_secret, resolve_secret
from e2ep.testing.llm_standin import StubLLM
from flows.config import load_config
from tests.synthetic import write_planted_csv
from tests.test_semantic_llm_path import schema_reply

KEY_ENV = "E2EP_LEAK_TEST_LLM_KEY"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def files_holding(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_planted_key_reaches_the_llm_and_no_output(tmp_path, monkeypatch, capfd):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    from flows.experiment import experiment

    key = f"sk-leak-{secrets.token_hex(16)}"
    ratings = write_planted_csv(tmp_path, n_users=16, n_items=16, per_user=8)
    logs = _Collect()
    watched = [logging.getLogger(n) for n in ("", "prefect", "e2ep", "LiteLLM", "httpx", "httpcore", "openai")]
    levels = [lg.level for lg in watched]
    for lg in watched:
        lg.addHandler(logs)
        lg.setLevel(logging.DEBUG)
    try:
        with StubLLM(reply=schema_reply) as stub:
            monkeypatch.setenv(KEY_ENV, key)
            cfg = load_config(
                None,
                {
                    "dataset.name": "csv",
                    "dataset.ratings_path": str(ratings),
                    "split.n_folds": 3,
                    "split.folds": [1],
                    "split.official": False,
                    "models.names": ["popularity"],
                    "evaluation.n_recommendations": 20,
                    "evaluation.protocols": ["full"],
                    "llm.model": "openai/stub-model",
                    "llm.api_base": stub.api_base,
                    "llm.api_key_env": KEY_ENV,
                    "profiles.backend": "llm",
                    "rerank.strategies": [],
                    "artifacts_dir": str(tmp_path / "artifacts"),
                    "run_name": "leak",
                },
            )
            state = experiment(cfg, return_state=True)
            assert state.is_completed(), state
            assert stub.api_keys == {key}  # the key was looked up and sent to the provider, and only there
    finally:
        for lg, level in zip(watched, levels, strict=True):
            lg.removeHandler(logs)
            lg.setLevel(level)

    run_dir = tmp_path / "artifacts" / "leak"
    profiles = json.loads((run_dir / "semantic.json").read_text())["profiles"]
    assert profiles["items"]["llm_usage"]["total"]["calls"] > 0  # the LLM path really ran

    needle = key.encode()
    assert files_holding(run_dir, needle) == []
    # Prefect's database, persisted task results, the LLM and embedding caches, intermediate files.
    assert files_holding(e2ep_home(), needle) == []
    out, err = capfd.readouterr()
    assert key not in out + err
    assert logs.lines and not [line for line in logs.lines if key in line]

    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [flow_run_id]}))
        ids = [flow_run_id, *[c.id for c in children]]
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        api_logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
    assert run.parameters["config"]["llm"]["api_key_env"] == KEY_ENV
    assert {"experiment-report", "llm-cost"} <= {a.key for a in artifacts}
    seen = json.dumps(
        [
            run.model_dump(mode="json"),
            [a.model_dump(mode="json") for a in artifacts],
            [entry.model_dump(mode="json") for entry in api_logs],
        ]
    )
    assert api_logs and key not in seen


def test_a_prefect_secret_block_supplies_the_key_at_call_time(tmp_path, monkeypatch):
    from prefect.blocks.system import Secret

    key = f"sk-block-{secrets.token_hex(16)}"
    block = f"e2ep-test-{secrets.token_hex(4)}"
    name = f"prefect-secret:{block}"
    with pytest.raises(ConfigError, match=f"block '{block}' not found"):
        resolve_secret(name)
    Secret(value=key).save(block)
    assert resolve_secret(name) == key
    with StubLLM(reply=lambda messages: "hi") as stub:
        cfg = LLMConfig(
            model="openai/stub-model", api_base=stub.api_base, api_key_env=name, cache_dir=str(tmp_path / "cache")
        )
        assert name in cfg.model_dump_json() and key not in cfg.model_dump_json()
        with LLMGateway(cfg) as gateway:
            gateway.preflight()
            assert gateway.complete("Say hi", stage="test").text == "hi"
        assert stub.api_keys == {key}
    assert files_holding(tmp_path / "cache", key.encode()) == []


def test_missing_secrets_are_one_line_errors(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"\\${KEY_ENV} is not set"):
        require_secret(KEY_ENV, "LLM API key")
    with pytest.raises(ConfigError, match="names no Prefect Secret block"):
        require_secret("prefect-secret:", "LLM API key")
