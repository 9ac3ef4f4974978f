"""Outputs are replaced whole or not at all: a writer that fails, or a process killed mid-write, leaves the
previous version intact and no partial file under the output's name."""

import subprocess
import sys
import time

import polars as pl
import pytest
from matplotlib.figure import Figure

import evaluation.report
import evaluation.summary
from e2ep.store import atomic_write, write_parquet, write_text
from evaluation.plots import save_png
from tests.crash_support import REPO, kill_group
from tests.test_report_run import catalog_frame, config, per_user_frame


def half_then_fail(tmp):
    tmp.write_bytes(b"partial")
    raise OSError("disk full")


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_failing_writers_leave_the_previous_version_and_no_temp_file(tmp_path):
    text = write_text("version 1", tmp_path / "a.md")
    plain = tmp_path / "plain"
    plain.write_text("")
    assert text.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # not mkstemp's owner-only mode
    with pytest.raises(OSError, match="disk full"):
        atomic_write(text, half_then_fail)
    assert text.read_text() == "version 1"

    frame = pl.DataFrame({"x": [1, 2]})
    ref = write_parquet(frame, tmp_path / "f.parquet")
    with pytest.raises(pl.exceptions.PolarsError):  # polars cannot write an object column
        write_parquet(pl.DataFrame({"x": [object()]}, schema={"x": pl.Object}), tmp_path / "f.parquet")
    assert pl.read_parquet(ref.path).equals(frame)

    class Broken(Figure):
        def savefig(self, fname, **kwargs):
            with open(fname, "wb") as fh:
                fh.write(b"\x89PNG half")
            raise RuntimeError("renderer crashed")

    good = save_png(Figure(figsize=(2, 2)), tmp_path / "fig.png")
    before = good.read_bytes()
    with pytest.raises(RuntimeError):
        save_png(Broken(), tmp_path / "fig.png")
    assert good.read_bytes() == before and before.startswith(b"\x89PNG\r\n\x1a\n")
    assert leftovers(tmp_path) == []


def test_report_failing_midway_keeps_the_previous_report(tmp_path, monkeypatch):
    names = ["bpr-mf", "lightgcn"]
    args = (
        config(names, tmp_path),
        per_user_frame({"bpr-mf": -0.1, "lightgcn": 0.0}, folds=(1,)),
        catalog_frame(names, (1,)),
        pl.DataFrame({"x": [1]}),
        [],
    )
    run = tmp_path / "run"
    evaluation.summary.write_run_report(run, *args)
    report = (run / "report.md").read_bytes()

    def broken(fig, path):
        raise OSError("disk full")

    monkeypatch.setattr(evaluation.report, "save_png", broken)
    with pytest.raises(OSError):
        evaluation.summary.write_run_report(run, *args)
    assert (run / "report.md").read_bytes() == report  # written last, so never ahead of its figures
    assert leftovers(run) == [] and leftovers(run / "figures") == []


def test_kill_during_a_write_leaves_the_previous_version(tmp_path):
    target = tmp_path / "big.bin"
    target.write_bytes(b"old")
    started = tmp_path / "started"
    code = (
        "import pathlib, time\nfrom e2ep.store import atomic_write\n"
        "def slow(tmp):\n"
        "    with open(tmp, 'wb') as fh:\n"
        "        fh.write(b'x' * 1_000_000)\n        fh.flush()\n"
        f"        pathlib.Path({str(started)!r}).touch()\n        time.sleep(60)\n"
        f"atomic_write({str(target)!r}, slow)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        kill_group(proc)
    assert target.read_bytes() == b"old"
    # The killed writer's temp file is a hidden sibling, never the output itself.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".big.bin.")] and len(
        [p for p in tmp_path.iterdir() if p.name == "big.bin"]
    ) == 1
