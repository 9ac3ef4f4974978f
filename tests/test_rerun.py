"""`e2ep run` with nothing changed since a finished run reuses it without running the flow."""

from pathlib import Path

from app.cli import main
from data import load_dataset
from flows.config import load_config, resolve_auto
from flows.rerun import RunMemo, run_key
from tests.synthetic import csv_run_args, write_planted_csv


def _args(ratings: Path, artifacts: Path, *extra: str) -> list[str]:
    return [
        "run",
        *csv_run_args(ratings, "1"),
        "--models",
        "popularity",
        "--no-semantic",
        "--k",
        "5",
        "--protocol",
        "full",
        "--set",
        "evaluation.n_recommendations=5",
        "--artifacts-dir",
        str(artifacts),
        *extra,
    ]


def test_the_run_key_changes_with_what_a_run_reads_and_not_with_its_name(tmp_path):
    ratings = write_planted_csv(tmp_path, n_users=12, n_items=16, per_user=8)
    cfg = resolve_auto(load_config(None, {"dataset.name": "csv", "dataset.ratings_path": str(ratings)}))
    data = load_dataset(cfg.dataset)
    key = run_key(cfg, data)
    assert run_key(cfg.model_copy(update={"run_name": "other", "workers": 1, "parallel_folds": 1}), data) == key
    assert (
        run_key(
            resolve_auto(
                load_config(
                    None, {"dataset.name": "csv", "dataset.ratings_path": str(ratings), "models.training.seed": 1}
                )
            ),
            data,
        )
        != key
    )
    changed = data.ratings.with_columns(data.ratings["rating"].reverse())
    assert run_key(cfg, type(data)(data.name, changed, data.users, data.items, data.source_dir)) != key


def test_an_unchanged_rerun_copies_the_finished_run_and_a_changed_one_runs(tmp_path, capsys):
    ratings = write_planted_csv(tmp_path, n_users=12, n_items=16, per_user=8)
    artifacts = tmp_path / "artifacts"
    assert main(_args(ratings, artifacts, "--run-name", "first")) == 0
    first = capsys.readouterr()
    assert "nothing this run reads changed" not in first.err

    assert main(_args(ratings, artifacts, "--run-name", "second")) == 0
    second = capsys.readouterr()
    assert "nothing this run reads changed since" in second.err and "--rerun" in second.err
    assert second.out == first.out.replace(str(artifacts / "first"), str(artifacts / "second"))
    assert (artifacts / "second" / "summary.md").read_text() == (artifacts / "first" / "summary.md").read_text()

    # A folder that is gone cannot be reused: the flow runs (from its task caches) and is remembered again.
    cfg = resolve_auto(load_config(None, {"dataset.name": "csv", "dataset.ratings_path": str(ratings)}))
    assert RunMemo(run_key(cfg, load_dataset(cfg.dataset))).reuse(tmp_path / "x") is None
    assert main(_args(ratings, artifacts, "--run-name", "third", "--rerun")) == 0
    assert "nothing this run reads changed" not in capsys.readouterr().err
