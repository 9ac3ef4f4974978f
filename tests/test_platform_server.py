"""A real Prefect server: start it, serve prefect.yaml's deployments, run `experiment/csv` on a tiny planted dataset
and read the run's state and artifacts back through Prefect's API. Every process started here is stopped here."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from app.serve import ServerProcess, start_serving, stop_process
from tests.prefect_db import seed_prefect_home
from tests.synthetic import write_planted_csv

SERVER_START_S = 60.0


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.is_file() else ""


def _wait(predicate, timeout_s: float, what: str, logs: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout_s:.0f} s; serving log:\n{_tail(logs)}")


def test_a_served_deployment_runs_on_a_real_server(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    ratings = write_planted_csv(tmp_path, n_users=40, n_items=30, per_user=10)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "E2EP_HOME": str(tmp_path / "e2ep"),
           "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_LOGGING_LEVEL": "INFO"}  # fmt: skip
    server_log, serving_log = tmp_path / "server.log", tmp_path / "serving.log"
    seed_prefect_home(tmp_path / "prefect")
    with server_log.open("wb") as slog, serving_log.open("wb") as rlog:
        server = ServerProcess(home=tmp_path / "prefect", log=slog, extra_args=("--no-ui", "--no-services"))
        serving = None
        try:
            server.launch()
            serving = start_serving(server.api_url, env=env, log=rlog)  # imports the flows meanwhile
            try:
                server.wait(SERVER_START_S)
            except (TimeoutError, RuntimeError) as exc:
                pytest.skip(f"no Prefect server on 127.0.0.1: {exc}\n{_tail(server_log)}")

            config = {
                "dataset": {"name": "csv", "ratings_path": str(ratings)},
                "split": {"n_folds": 3, "folds": [1, 2], "official": False},
                "models": {"names": ["popularity", "bpr-mf"], "training": {"max_epochs": 5}},
                "evaluation": {"n_recommendations": 20, "protocols": ["full"]},
                "semantic": False,
                "artifacts_dir": str(tmp_path / "artifacts"),
                "run_name": "served",
            }
            with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:

                def deployment():
                    assert serving.poll() is None, f"serving process exited:\n{_tail(serving_log)}"
                    try:
                        return client.read_deployment_by_name("experiment/csv")
                    except Exception:  # not registered yet
                        return None

                dep = _wait(deployment, 60, "deployment experiment/csv registered", serving_log)
                assert {d.name for d in client.read_deployments()} == {"ml-100k", "ml-1m", "csv"}
                run = client.create_flow_run_from_deployment(dep.id, parameters={"config": config})

                def finished():
                    state = client.read_flow_run(run.id).state
                    return state if state is not None and state.is_final() else None

                state = _wait(finished, 120, "the flow run finished", serving_log)
                assert state.is_completed(), f"{state}\n{_tail(serving_log)}"
                # Parameters travel as the typed config: the run's record holds them as sent.
                assert client.read_flow_run(run.id).parameters["config"]["dataset"]["ratings_path"] == str(ratings)

                artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
                by_key = {a.key: a for a in artifacts}
                assert {"experiment-results", "experiment-summary", "experiment-report", "experiment-folder"} <= set(
                    by_key
                )
                table = json.loads(by_key["experiment-results"].data)
                assert {row["model"] for row in table} == {"popularity", "bpr-mf"}
                run_dir = (tmp_path / "artifacts" / "served").resolve()
                assert run_dir.as_uri() in by_key["experiment-report"].data
                assert run_dir.as_uri() in by_key["experiment-folder"].data
                assert (run_dir / "summary.md").is_file()
                # The server is this test's own: its only other runs are the two fold subflows, completed.
                folds = {r.name: r.state.type.value for r in client.read_flow_runs() if r.id != run.id}
                assert folds == {"fold-1": "COMPLETED", "fold-2": "COMPLETED"}
        finally:
            stop_process(serving)
            server.stop()
    assert serving is not None and serving.poll() is not None
    assert server.process is not None and server.process.poll() is not None
    with pytest.raises(ProcessLookupError):  # nothing of the server's session is left
        os.killpg(server.process.pid, 0)


def test_served_ui_is_told_the_chosen_port(tmp_path, monkeypatch):
    # The UI reads its API address from the server's /ui-settings, i.e. PREFECT_UI_API_URL, whose default is port
    # 4200 whatever --port says (measured: `make serve PREFECT_PORT=4242` served ui-settings naming 4200).
    monkeypatch.delenv("PREFECT_UI_API_URL", raising=False)
    server = ServerProcess(port=4242, home=tmp_path / "prefect")
    assert server.env["PREFECT_UI_API_URL"] == "http://127.0.0.1:4242/api" == server.api_url
    monkeypatch.setenv("PREFECT_UI_API_URL", "https://proxy.example/api")  # one set by hand is kept
    assert ServerProcess(port=4242, home=tmp_path / "prefect").env["PREFECT_UI_API_URL"] == "https://proxy.example/api"


def _run_servers() -> list:
    import psutil

    return [p for p in psutil.Process().children() if "e2ep.prefect_server" in " ".join(p.cmdline())]


def test_the_run_s_own_server_starts_on_entry_and_is_gone_after_the_block(tmp_path, monkeypatch):
    """`e2ep run` enters `temporary_server` before its checks and imports, so the server's start-up overlaps them:
    the process exists at once, `ready()` waits for it and points Prefect (and processes the run starts) at it, and
    leaving the block, normally or on an error before `ready()`, stops it and forgets its address."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    from e2ep.errors import E2EPError
    from e2ep.prefect_server import temporary_server

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    seed_prefect_home(tmp_path / "prefect")
    with temporary_server() as ready:
        servers = _run_servers()
        assert len(servers) == 1 and "PREFECT_API_URL" not in os.environ  # started, not waited for
        url = ready()
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        assert os.environ["PREFECT_API_URL"] == url == PREFECT_API_URL.value() and ready() == url
    assert "PREFECT_API_URL" not in os.environ and PREFECT_API_URL.value() != url
    assert not servers[0].is_running()

    with pytest.raises(E2EPError), temporary_server():  # e.g. the LLM preflight fails before the flow
        servers = _run_servers()
        raise E2EPError("refused")
    assert len(servers) == 1 and not servers[0].is_running() and not _run_servers()

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # a server of the user's: none is started
    with temporary_server() as ready:
        assert ready() is None and not _run_servers()
