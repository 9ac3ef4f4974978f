"""`make bench` measures every stage with real work (tiny data here; the figures come from real data)."""

from app.bench import bench_dataset
from data.config import DatasetConfig, SplitConfig
from models.config import ModelsConfig
from tests.synthetic import write_planted_csv


def test_bench_measures_each_stage(tmp_path, capsys):
    ratings = write_planted_csv(tmp_path)
    models = ModelsConfig.model_validate({"training": {"max_epochs": 10}, "lightgcn": {"num_layers": [1, 2]}})
    rows = []
    bench_dataset(
        "tiny",
        DatasetConfig(name="csv", ratings_path=str(ratings)),
        SplitConfig(official=False),
        models,
        rows,
        gat_backends=["dgl", "pyg"],
    )
    stages = [r.stage for r in rows]
    assert stages[:2] == ["load", "split (5 folds)"]
    assert {"fit+recommend lightgcn", "evaluate lightgcn", "fit+recommend bpr-mf"} <= set(stages)
    assert all(r.seconds > 0 and r.peak_mib > 10 for r in rows)
    lightgcn = next(r for r in rows if r.stage == "fit+recommend lightgcn")
    assert "grid of 2" in lightgcn.note and "val NDCG@10" in lightgcn.note
    assert "fit+recommend lightgcn" in capsys.readouterr().out
    for backend in ("dgl", "pyg"):
        gat = next(r for r in rows if r.stage == f"fit+recommend gat[{backend}]")
        assert "s/epoch" in gat.note and "random 384-d features" in gat.note
    assert "evaluate gat[pyg]" in stages


def test_the_run_budget_groups_task_runs_by_stage(tmp_path):
    import os
    import sqlite3

    from app.bench_run import _tree_rss, compute_floor, stage_budget

    db = tmp_path / "prefect.db"
    with sqlite3.connect(db) as con:
        con.execute("create table task_run (name text, start_time text, end_time text)")
        con.executemany(
            "insert into task_run values (?, ?, ?)",
            [
                ("train-lightgcn-fold1", "2026-01-01 00:00:00.000000", "2026-01-01 00:00:30.000000"),
                ("train-lightgcn-fold2", "2026-01-01 00:00:05.000000", "2026-01-01 00:00:45.500000"),
                ("evaluate-gat/no-cosine-fold1", "2026-01-01 00:01:00", "2026-01-01 00:01:02"),
                ("report-5e1", "2026-01-01 00:02:00", "2026-01-01 00:02:04"),
                ("run-fold-1", "2026-01-01 00:00:00", "2026-01-01 00:03:00"),  # waits for its subflow only
                ("embed-user_idx", "2026-01-01 00:00:00", None),  # still running when the run was killed
            ],
        )
    budget = {stage: (n, total, longest) for stage, n, total, longest in stage_budget(db)}
    assert budget["train lightgcn"] == (2, 70.5, 40.5)
    # With the run's folder, a fit or an embedding counts its own seconds, not its wait for a worker; the
    # cold-start protocol's fits get rows of their own.
    run = tmp_path / "run"
    run.mkdir()
    (run / "training.json").write_text(
        '[{"model": "lightgcn", "fold": 1, "seconds": 12.0}, {"model": "lightgcn", "fold": 2, "seconds": 9.5}]'
    )
    (run / "training-cold-start.json").write_text('[{"model": "lightgcn", "fold": 1, "seconds": 7.0}]')
    (run / "semantic.json").write_text(
        '{"embeddings": {"items": {"seconds": 3.0}, "users-fold1": {"seconds": 2.0}, '
        '"users-fold1-cold-start": {"seconds": 0.5}}}'
    )
    own = {s: (n, t) for s, n, t, _ in stage_budget(db, run)}
    assert own["train lightgcn"] == (2, 21.5) and own["train lightgcn (cold-start)"] == (1, 7.0)
    assert own["embed user_idx"] == (2, 2.5) and own["embed item_idx"] == (1, 3.0)
    assert budget["evaluate gat/no-cosine"] == (1, 2.0, 2.0) and budget["report"] == (1, 4.0, 4.0)
    assert budget["embed user_idx"] == (1, 0.0, 0.0)
    assert list(budget)[0] == "train lightgcn" and "run-fold-1" not in budget  # the costliest stage first
    assert _tree_rss(os.getpid()) > 10 * 2**20
    # The floor counts the jobs' own compute only: fits 21.5 + 7.0 s, embeddings 2.5 + 3.0 s, not the report.
    floor = compute_floor(stage_budget(db, run), workers=2)
    assert "34.0 s of one core's work" in floor and "under 17.0 s" in floor


def test_the_tree_s_pss_counts_pages_its_processes_share_once():
    import os
    import subprocess
    import sys
    import time

    from app.bench_run import _pss, _tree_pss, _tree_rss

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        time.sleep(0.5)  # the child has mapped its interpreter
        rss, pss = _tree_rss(os.getpid()), _tree_pss(os.getpid())
        # both interpreters map the same files: summed RSS counts those pages twice, PSS once
        assert 0 < _pss(child.pid) < pss < rss
    finally:
        child.communicate(b"")
    assert _pss(child.pid) == 0  # a process that is gone counts nothing
