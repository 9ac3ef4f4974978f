"""Whole-run reuse: `e2ep run` with nothing changed since a finished run copies that run's folder instead of
starting Prefect at all.

Every task of the flow is cached on what it reads, so such a rerun would train, embed and evaluate nothing; what it
would still pay is a Prefect server start, a few hundred task-run records and the report (tens of seconds). The
run key below is what the whole run reads: the configuration with every `auto` resolved (run naming and worker
counts excluded: they do not change a result), the prepared dataset and folds (by content), the local metadata
file, the code the flow runs and the versions of the libraries that compute the numbers. A changed key runs the
flow, whose task caches then reuse everything unchanged. `--rerun` always runs the flow.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

import polars as pl

from data import Dataset, make_folds
from e2ep.codehash import code_digest
from e2ep.runtime import e2ep_home
from e2ep.store import atomic_write, file_digest, stable_hash
from flows.config import ExperimentConfig, semantic_settings

# Fields that name or schedule a run without changing any number in it.
NOT_RESULTS = {
    "run_name": True,
    "artifacts_dir": True,
    "parallel_folds": True,
    "workers": True,
    "task_runner": True,
    "dask_address": True,
    "dask_processes": True,
}
LIBRARIES = (
    "torch",
    "numpy",
    "scipy",
    "polars",
    "implicit",
    "cornac",
    "optuna",
    "dgl",
    "torch_geometric",
    "sentence-transformers",
    "litellm",
)
FLOW_CODE = ("flows.experiment", "models.registry", "app.cli")


def _frame_digest(frame: pl.DataFrame) -> str:
    return hashlib.sha256(frame.hash_rows(seed=0).to_numpy().tobytes() + str(frame.schema).encode()).hexdigest()


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def run_key(cfg: ExperimentConfig, dataset: Dataset) -> str:
    """What the whole run reads (see the module docstring), as one digest; `cfg` has passed `resolve_auto`."""
    settings = cfg.model_copy(update={"llm": semantic_settings(cfg)[1]}).model_dump(mode="json", exclude=NOT_RESULTS)
    data = [_frame_digest(dataset.ratings), _frame_digest(dataset.users), _frame_digest(dataset.items)]
    folds = [(f.number, _frame_digest(f.train), _frame_digest(f.test)) for f in make_folds(dataset, cfg.split)]
    local = cfg.metadata.local_path
    metadata_file = file_digest(local) if local and Path(local).is_file() else None
    return stable_hash(settings, data, folds, metadata_file, code_digest(*FLOW_CODE), _versions())


def default_run_name(cfg: ExperimentConfig) -> str:
    return cfg.run_name or f"{cfg.dataset.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


@dataclass(frozen=True)
class RunMemo:
    """The finished run (folder and console text) recorded under a run key."""

    key: str

    @property
    def path(self) -> Path:
        return e2ep_home() / "runs" / f"{self.key}.json"

    def reuse(self, run_dir: Path) -> tuple[Path, str] | None:
        """Copy the remembered run's folder to `run_dir`; returns (the earlier folder, its console text), or None
        when no finished run has this key or its folder is gone."""
        if not self.path.is_file():
            return None
        record = json.loads(self.path.read_text(encoding="utf-8"))
        earlier = Path(record["run_dir"])
        if not (earlier / "summary.md").is_file() or not (earlier / "report.md").is_file():
            return None
        if earlier.resolve() != run_dir.resolve():
            shutil.copytree(earlier, run_dir, dirs_exist_ok=True)
        return earlier, record["console"].replace(str(earlier), str(run_dir))

    def remember(self, run_dir: Path, console: str) -> None:
        record = json.dumps({"run_dir": str(run_dir), "console": console})
        atomic_write(self.path, lambda tmp: tmp.write_text(record, encoding="utf-8"))
