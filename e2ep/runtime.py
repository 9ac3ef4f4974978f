"""Process-wide settings applied before Prefect or torch are imported.

Runs are self-contained: Prefect's database, persisted task results and intermediate files live under one
project-local folder (`$E2EP_HOME`, default `./.e2ep`), so `rm -r .e2ep` forgets every cached result.
"""

from __future__ import annotations

import os
from pathlib import Path


def e2ep_home() -> Path:
    return Path(os.environ.get("E2EP_HOME", ".e2ep")).resolve()


def work_dir() -> Path:
    """Content-addressed intermediate files (prepared datasets, folds, recommendations)."""
    return e2ep_home() / "work"


def configure_environment() -> None:
    """Default Prefect to a local, telemetry-free, result-persisting setup; explicit settings win."""
    home = e2ep_home()
    defaults = {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "results"),
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Stage progress logged by e2ep's own modules (LLM batches, embeddings) shows in the flow run's logs.
        "PREFECT_LOGGING_EXTRA_LOGGERS": "e2ep,data,semantic,models,rerank,evaluation,tasks,flows",
        # Prefect's temporary local server (no PREFECT_API_URL) gets 20 s to start by default: too few on a busy
        # machine, where the run would then fail before any work.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        # litellm otherwise fetches its model price list from the network at import.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    # Prefect's sqlite database cannot be created inside a folder that does not exist yet.
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
