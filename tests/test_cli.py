"""The `e2ep` command line: what users see, especially on bad input (one line, non-zero exit)."""

import json
import math

import pytest

from app.cli import main
from data import ARCHIVES, ArchiveSpec


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_config_flags_and_set_reach_the_typed_config(capsys):
    code, out, _ = run_cli(
        capsys,
        "config",
        "--dataset",
        "ml-1m",
        "--k",
        "20,5",
        "--models",
        "lightgcn",
        "--set",
        "models.lightgcn.num_layers=[2,3]",
        "--set",
        "split.seed=9",
    )
    cfg = json.loads(out)
    assert code == 0
    assert cfg["dataset"]["name"] == "ml-1m" and cfg["evaluation"]["k"] == [5, 20]
    assert cfg["models"]["names"] == ["lightgcn"] and cfg["models"]["lightgcn"]["num_layers"] == [2, 3]
    assert cfg["split"]["seed"] == 9


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["run", "--k", "0,5"], "evaluation.k"),
        (["run", "--models", "popularity,sasrec"], "unknown model"),
        (["run", "--dataset", "movielens-20m"], "dataset.name"),
        (["run", "--dataset", "csv"], "ratings_path"),
        (["run", "--folds", "one"], "integers"),
        (["run", "--config", "/nonexistent/exp.toml"], "config file not found"),
        (["run", "--set", "split.no_such_field=1"], "no_such_field"),
        (["run", "--models", "popularity,als", "--reference", "nosuch"], "evaluation.reference 'nosuch'"),
        (["run", "--models", "popularity,als", "--reference", "lightgcn"], "not a method of this run"),
        (["run", "--seeds", "1,1"], "seeds must be distinct"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(capsys, argv, needle):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("e2ep: error:") and needle in err


def test_missing_data_without_network_says_how_to_point_at_a_local_copy(capsys, monkeypatch, tmp_path):
    # Port 9 on loopback refuses connections: the same failure as a machine without network.
    dead = ArchiveSpec(
        url="http://127.0.0.1:9/ml-100k.zip", md5="0" * 32, folder="ml-100k", required=ARCHIVES["ml-100k"].required
    )
    monkeypatch.setattr("data.download.ARCHIVES", {"ml-100k": dead, "ml-1m": ARCHIVES["ml-1m"]})
    monkeypatch.delenv("E2EP_DATA_DIR", raising=False)
    monkeypatch.setenv("E2EP_CACHE_DIR", str(tmp_path / "cache"))
    code, _, err = run_cli(capsys, "run", "--data-dir", str(tmp_path / "empty"))
    assert code == 2 and err.count("\n") == 1
    assert "E2EP_DATA_DIR" in err
    assert not any((tmp_path / "cache").glob("**/ml-100k")), "nothing half-extracted may be left"


def test_evaluate_scores_external_files(capsys, tmp_path):
    test = tmp_path / "u.test"
    test.write_text("1\t10\t5\t0\n1\t11\t2\t0\n2\t12\t4\t0\n")
    recs = tmp_path / "recs.csv"
    recs.write_text("user_id,movie_id,recommendation_rank\n1,10,1\n1,99,2\n2,13,1\n2,12,2\n3,10,1\n")
    code, out, _ = run_cli(capsys, "evaluate", "--test", str(test), "--recs", str(recs), "--k", "1,2", "--json")
    report = json.loads(out)
    assert code == 0
    metrics = report["segments"]["all"]["metrics"]
    # user 1 (relevant {10}) hits at rank 1; user 2 (relevant {12}) at rank 2; user 3 has no test data.
    assert metrics["precision"]["1"]["value"] == pytest.approx(0.5)
    assert metrics["precision"]["2"]["value"] == pytest.approx(0.5)
    assert metrics["ndcg"]["2"]["value"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert metrics["mrr"]["2"]["value"] == pytest.approx(0.75)
    assert report["counts"]["recs_users_not_in_test"] == 1


def test_evaluate_rejects_bad_k_and_malformed_files(capsys, tmp_path):
    test = tmp_path / "u.test"
    test.write_text("1\t10\t5\t0\n1\t11\n")
    recs = tmp_path / "recs.csv"
    recs.write_text("user_id,item_id,rank\n1,10,1\n")
    code, _, err = run_cli(capsys, "evaluate", "--test", str(test), "--recs", str(recs), "--k", "0")
    assert code == 2 and "k" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "evaluate", "--test", str(test), "--recs", str(recs))
    assert code == 2 and "u.test" in err and "2" in err and err.count("\n") == 1
