"""`make bench` target `run`: a cold `e2ep run` (the `make eval` experiment) in a fresh home, and its time budget
per stage read back from the run's Prefect database.

Each stage row sums the wall time of its task runs (a training stage: the seconds of each fit, without its wait
for a worker); tasks run side by side (folds at once, a worker pool per core), so the rows add up to about the
cores times the run's wall time. Peak memory is the largest sum of resident set sizes
over the run's whole process tree (the flow process, its Prefect server and its workers), sampled every 0.25 s (a
50 ms sampler walking /proc itself used ~12 % of a core, slowing the run it measured).
That sum counts pages the processes share (the libraries' files) once per process; the peak of the tree's summed
proportional set size (PSS: each shared page split among its sharers, so counted once in all) is printed beside
it, sampled every second (reading it walks each process's page tables).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from e2ep.pool import default_workers

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _tree_rss(root: int) -> int:
    """Sum of resident bytes of `root` and every descendant (Linux /proc)."""
    return sum(_tree_members(root).values())


def _pss(pid: int) -> int:
    """Proportional set size of a process in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def _tree_pss(root: int) -> int:
    """Sum of proportional set sizes of `root` and every descendant: shared pages counted once in all."""
    return sum(_pss(pid) for pid in _tree_members(root))


def _tree_members(root: int) -> dict[int, int]:
    """Resident bytes of `root` and of every descendant, by pid (Linux /proc)."""
    children: dict[int, list[int]] = defaultdict(list)
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            rss[int(entry.name)] = int((entry / "statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
        children[int(stat[1])].append(int(entry.name))
    members: dict[int, int] = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        members[pid] = rss.get(pid, 0)
        pending += children.get(pid, [])
    return members


def stage_of(task_run: str) -> str:
    """`train-lightgcn-fold3` → `train lightgcn`; `embed-user_idx` → `embed user_idx`; `report-5e1` → `report`."""
    name = re.sub(r"-fold\d+$", "", task_run)
    name = re.sub(r"-[0-9a-f]{3}$", "", name)
    verb, _, rest = name.partition("-")
    if verb in ("train", "evaluate", "embed", "rerank") and rest:
        return f"{verb} {rest}"
    return name


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    parse = lambda s: datetime.fromisoformat(s.replace(" ", "T"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def stage_budget(database: Path, run_dir: Path | None = None) -> list[tuple[str, int, float, float]]:
    """(stage, task runs, summed seconds, longest seconds) per stage of every run in a Prefect sqlite database.

    A training or embedding task's wall time includes its wait for a free worker (every fold submits its jobs at
    once), so with the run's folder (`run_dir`) those stages take each job's own seconds instead: fits from
    `training.json` and the cold-start protocol's from `training-cold-start.json` (as `… (cold-start)` rows),
    embeddings from `semantic.json`. The fold subflows' wrapper tasks (`run-fold-N`) only wait and are left out."""
    with sqlite3.connect(database) as db:
        rows = db.execute("select name, start_time, end_time from task_run").fetchall()
    stages: dict[str, list[float]] = defaultdict(list)
    own: set[str] = set()  # verbs whose rows come from the run's folder
    for name, suffix in (("training.json", ""), ("training-cold-start.json", " (cold-start)")):
        path = run_dir / name if run_dir is not None else None
        for fit in json.loads(path.read_text()) if path is not None and path.is_file() else []:
            stages[f"train {fit['model']}{suffix}"].append(float(fit.get("seconds", 0.0)))
            own.add("train ")
    semantic = run_dir / "semantic.json" if run_dir is not None else None
    embeddings = json.loads(semantic.read_text()).get("embeddings", {}) if semantic and semantic.is_file() else {}
    if embeddings and all("seconds" in report for report in embeddings.values()):
        for name, report in embeddings.items():
            stages["embed item_idx" if name == "items" else "embed user_idx"].append(float(report["seconds"]))
        own.add("embed ")
    for name, start, end in rows:
        stage = stage_of(name)
        if stage.startswith(("run-fold", "fold-", *own)):
            continue
        stages[stage].append(_seconds(start, end))
    return sorted(((s, len(t), sum(t), max(t)) for s, t in stages.items()), key=lambda r: -r[2])


def compute_floor(budget: Sequence[tuple[str, int, float, float]], workers: int) -> str:
    """The wall time no schedule can beat: the fits' and embeddings' own seconds (each job's compute on one core,
    without its wait for a worker) spread perfectly over the pool's `workers`. The other rows are left out because
    their task times may include waits."""
    work = sum(total for stage, _, total, _ in budget if stage.startswith(("train ", "embed ")))
    return (
        f"fits and embeddings alone: {work:.1f} s of one core's work, so no schedule on {workers} worker(s) "
        f"ends under {work / max(workers, 1):.1f} s"
    )


def bench_run(run_args: Sequence[str]) -> int:
    """Run `e2ep run <run_args>` cold in a fresh home; print its wall time, peak memory and stage budget."""
    with tempfile.TemporaryDirectory(prefix="e2ep-bench-") as tmp:
        home = Path(tmp)
        env = {
            **os.environ,
            "E2EP_HOME": str(home),
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_LOCAL_STORAGE_PATH": str(home / "results"),
        }
        env.pop("PREFECT_API_URL", None)
        command = [
            sys.executable,
            "-m",
            "app.cli",
            "run",
            "--artifacts-dir",
            str(home / "artifacts"),
            "--run-name",
            "bench",
            *run_args,
        ]
        print(f"  cold run: e2ep run {' '.join(run_args)}", flush=True)
        started = time.perf_counter()
        with (home / "run.log").open("w") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            peak = peak_pss = 0
            for tick in itertools.count():
                if process.poll() is not None:
                    break
                peak = max(peak, _tree_rss(process.pid))
                if tick % 4 == 0:
                    peak_pss = max(peak_pss, _tree_pss(process.pid))
                time.sleep(0.25)
        wall = time.perf_counter() - started
        if process.returncode:
            tail = (home / "run.log").read_text(errors="replace").splitlines()[-15:]
            print(f"  the run failed (exit {process.returncode}):", *tail, sep="\n    ", flush=True)
            return process.returncode
        print(f"  {'stage':32s}{'tasks':>6s}{'summed s':>11s}{'longest s':>11s}")
        budget = stage_budget(home / "prefect" / "prefect.db", home / "artifacts" / "bench")
        for stage, count, total, longest in budget:
            print(f"  {stage:32s}{count:6d}{total:11.1f}{longest:11.1f}")
        print(f"  {compute_floor(budget, default_workers())}", flush=True)
        print(
            f"  wall {wall:.1f} s, peak RSS of the process tree {peak / 2**30:.2f} GiB ({os.cpu_count()} cores)",
            flush=True,
        )
        print(f"  peak PSS of the process tree {peak_pss / 2**30:.2f} GiB (shared pages counted once)", flush=True)
    return 0
