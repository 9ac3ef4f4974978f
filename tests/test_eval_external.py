"""Scoring external files: formats, id mapping, reporting of oddities, and error messages."""

import gzip
import json

import polars as pl
import pytest

from e2ep.errors import ConfigError, DataError
from evaluation.external import evaluate_files, read_table
from evaluation.metrics import evaluate

# u.data style: user item rating timestamp (tab separated)
TEST_UDATA = "1\t10\t5\t881250949\n1\t20\t4\t881250949\n1\t40\t2\t881250949\n2\t30\t4\t881250949\n3\t10\t1\t0\n"
TRAIN_UDATA = "1\t50\t5\t0\n1\t60\t3\t0\n1\t70\t4\t0\n2\t50\t4\t0\n"
RECS_CSV = "user_id,movie_id,recommendation_rank\n1,10,1\n1,99,2\n1,20,3\n2,50,1\n2,30,2\n7,10,1\n"


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def metric(report, segment, name, k):
    return report.segments[segment]["metrics"][name][str(k)]["value"]


def test_full_protocol_hand_computed(tmp_path):
    rep = evaluate_files(
        write(tmp_path, "u1.test", TEST_UDATA),
        write(tmp_path, "recs.csv", RECS_CSV),
        train_path=write(tmp_path, "u1.base", TRAIN_UDATA),
        k=[2],
        cold_start_max=2,
    )
    # Relevant: user 1 {10, 20}, user 2 {30}; user 3 none -> 2 users evaluated.
    # user 1 top-2 [10, 99]: 1 hit -> P 1/2, R 1/2; user 2 top-2 [50, 30]: hit at 2 -> P 1/2, R 1, MRR 1/2.
    assert rep.segments["all"]["n_users_evaluated"] == 2
    assert metric(rep, "all", "precision", 2) == pytest.approx(0.5)
    assert metric(rep, "all", "recall", 2) == pytest.approx(0.75)
    assert metric(rep, "all", "mrr", 2) == pytest.approx(0.75)
    # catalog = items of train ∪ test ∪ recs = {10,20,30,40,50,60,70,99} = 8; top-2 items {10,99,50,30}
    assert rep.catalog_size == 8
    assert metric(rep, "all", "coverage", 2) == pytest.approx(4 / 8)
    c = rep.counts
    assert (c["recs_users_not_in_test"], c["recs_rows_users_not_in_test"]) == (1, 1)  # user 7
    assert (c["recs_items_unseen"], c["recs_rows_in_train"]) == (1, 1)  # item 99; (2, 50) is in train
    assert len(rep.warnings) == 3
    # cold start (< 2 train ratings): user 2 (1 rating) and user 3 (none); only user 2 has a relevant item
    assert rep.segments["cold-start"]["n_users_evaluated"] == 1
    assert metric(rep, "cold-start", "precision", 2) == pytest.approx(0.5)
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["segments"]["all"]["metrics"]["recall"]["2"]["n_users"] == 2
    md = rep.to_markdown()
    assert "| precision | 0.5000 (n=2) |" in md and "### cold-start" in md


def test_csv_inputs_and_paper_protocol_match_direct_evaluation(tmp_path):
    test_csv = "user_id,item_id,rating\nu1,a,5\nu1,b,4\nu1,c,2\nu2,b,5\n"
    recs_csv = "user_id,item_id,rank\nu1,c,1\nu1,z,2\nu1,a,3\nu2,a,1\n"
    rep = evaluate_files(
        write(tmp_path, "t.csv", test_csv), write(tmp_path, "r.csv", recs_csv), protocol="paper", k=[3]
    )
    # same data with ints: users u1=0,u2=1; items a=0,b=1,c=2,z=3
    test = pl.DataFrame({"user_idx": [0, 0, 0, 1], "item_idx": [0, 1, 2, 1], "rating": [5.0, 4, 2, 5]})
    recs = pl.DataFrame({"user_idx": [0, 0, 0, 1], "item_idx": [2, 3, 0, 0], "rank": [1, 2, 3, 1]})
    direct = evaluate(recs, test, protocol="paper", k=[3]).summary()
    for row in direct.iter_rows(named=True):
        assert metric(rep, "all", row["metric"], 3) == pytest.approx(row["value"])
    # u1: F = [c, a] -> P = 1/2 by hand; u2: F empty -> skipped for precision.
    assert metric(rep, "all", "precision", 3) == pytest.approx(0.5)
    assert rep.catalog_size is None


def test_ml1m_separator_and_gzip(tmp_path):
    df = read_table(write(tmp_path, "ratings.dat", "1::1193::5::978300760\n\n2::661::3::978302109\n"), "ratings")
    assert df["user"].to_list() == ["1", "2"] and df["value"].to_list() == [5.0, 3.0]
    assert df["line"].to_list() == [1, 3]
    gz = tmp_path / "t.tsv.gz"
    gz.write_bytes(gzip.compress(b"5 6 4.5\n"))
    assert read_table(gz, "ratings")["item"].to_list() == ["6"]


@pytest.mark.parametrize(
    "name,text,kind,pattern",
    [
        ("bad.data", "1\t2\t5\n1\t3\tfive\n", "ratings", r"bad\.data: line 2: .*rating='five'"),
        ("short.data", "1\t2\t5\n1 3\n", "ratings", r"short\.data: line 2"),
        ("empty.data", "\n\n", "ratings", r"empty\.data: file is empty"),
        ("nocol.csv", "user_id,item_id,score\n1,2,3\n", "ratings", r"nocol\.csv: missing column\(s\) rating"),
        ("rank.csv", "user_id,item_id,rank\n1,2,1\n1,3,0\n", "recs", r"rank\.csv: line 3: .*integer"),
        ("frac.csv", "user_id,item_id,rank\n1,2,1.5\n", "recs", r"frac\.csv: line 2"),
        ("plain.recs", "1 2 1\n", "recs", r"plain\.recs: recommendations need a CSV header"),
        ("header.csv", "user_id,item_id,rating\n", "ratings", r"header\.csv: no data rows"),
    ],
)
def test_malformed_inputs(tmp_path, name, text, kind, pattern):
    with pytest.raises(DataError, match=pattern):
        read_table(write(tmp_path, name, text), kind)


def test_argument_errors(tmp_path):
    t, r = write(tmp_path, "t.data", TEST_UDATA), write(tmp_path, "r.csv", RECS_CSV)
    for bad in ([0], [], [5, -2]):
        with pytest.raises(ConfigError, match="k must"):
            evaluate_files(t, r, k=bad)
    with pytest.raises(ConfigError, match="train"):
        evaluate_files(t, r, cold_start_max=5)
    with pytest.raises(DataError, match="missing.data: file not found"):
        evaluate_files(tmp_path / "missing.data", r)
    assert evaluate_files(t, r, k=[2], n_items=100).catalog_size == 100
