"""Bad input, as a new user would give it: one line on stderr, exit 2, refused before Prefect starts, nothing cached.
Also what real rating files should simply be accepted as."""

from pathlib import Path

import pytest

import e2ep.prefect_server
from app.cli import main
from data import load_dataset
from data.config import DatasetConfig
from semantic.profiles.templates import template_item_profile

RATINGS = "userId,movieId,rating,timestamp\n1,10,4.5,100\n1,20,2.5,101\n2,10,3,102\n2,30,5,103\n"


def _ml100k(folder: Path, data: str) -> Path:
    """A minimal extracted ml-100k folder whose u.data is `data`."""
    root = folder / "ml-100k"
    root.mkdir(parents=True)
    (root / "u.data").write_text(data)
    (root / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    (root / "u.genre").write_text("".join(f"g{i}|{i}\n" for i in range(19)))
    flags = "|".join("0" * 19)
    (root / "u.item").write_text(f"10|Heat (1995)|01-Jan-1995||http://x|{flags}\n")
    return folder


# (files to write, argv (with {tmp} for the folder), what the one line must say)
CASES = {
    "toml syntax": (
        {"exp.toml": b"[split\nseed = 1\n"},
        ["run", "--config", "{tmp}/exp.toml"],
        "config file {tmp}/exp.toml is not valid TOML",
    ),
    "toml not utf-8": (
        {"exp.toml": b"[split]\nseed = 1 # caf\xe9\n"},
        ["run", "--config", "{tmp}/exp.toml"],
        "is not UTF-8 text",
    ),
    "fold beyond n_folds": ({}, ["run", "--folds", "9"], "fold(s) 9 do not exist: there are 5"),
    "unknown reference": (
        {},
        ["run", "--reference", "nosuch"],
        "evaluation.reference 'nosuch' is not a method of this run",
    ),
    "reference not run": (
        {},
        ["run", "--models", "popularity", "--reference", "lightgcn"],
        "evaluation.reference 'lightgcn' is not a method of this run; use 'auto' or one of: popularity",
    ),
    "relevance above scale": (
        {},
        ["run", "--relevance", "9"],
        "relevance.positive_threshold 9 is outside the rating scale 1-5",
    ),
    "n_folds with official split": ({}, ["run", "--n-folds", "3"], "the official ML-100K split has 5 folds"),
    "scale reversed": ({}, ["run", "--rating-scale", "5,1"], "lowest < highest"),
    "unknown separator": (
        {},
        ["run", "--dataset", "csv", "--ratings", "r.csv", "--sep", "x"],
        "separator must be one of",
    ),
    "header only": (
        {"r.csv": b"userId,movieId,rating\n"},
        ["run", "--dataset", "csv", "--ratings", "{tmp}/r.csv"],
        "r.csv: no ratings (the file has a header and no data lines)",
    ),
    "rating above csv scale": (
        {"r.csv": b"user_id,item_id,rating\n1,2,4\n1,3,7\n"},
        ["run", "--dataset", "csv", "--ratings", "{tmp}/r.csv"],
        "r.csv line 3: rating 7 is outside the rating scale 0.5-5",
    ),
    "negative rating": (
        {"r.csv": b"user_id,item_id,rating\n1,2,-3\n"},
        ["run", "--dataset", "csv", "--ratings", "{tmp}/r.csv"],
        "r.csv line 2: rating -3 is outside the rating scale 0.5-5",
    ),
    "rating outside u.data scale": (
        {},
        ["run", "--data-dir", "{tmp}/ml"],
        "u.data line 2: rating 9 is outside the rating scale 1-5",
    ),
    "wrong separator given": (
        {"r.tsv": b"user_id\titem_id\trating\n1\t2\t4\n"},
        ["run", "--dataset", "csv", "--ratings", "{tmp}/r.tsv", "--sep", ","],
        "r.tsv: header lacks user_id, item_id, rating column(s) (read as comma-separated",
    ),
    "no item column": (
        {"r.csv": b"user,thing,rating\n1,2,4\n"},
        ["run", "--dataset", "csv", "--ratings", "{tmp}/r.csv"],
        "header lacks item_id column",
    ),
    "short tab line": (
        {"r.tsv": b"user_id\titem_id\trating\n1\t2\t4\n1\t3\n"},
        ["run", "--dataset", "csv", "--ratings", "{tmp}/r.tsv"],
        "r.tsv line 3: expected 3 tab-separated fields, got 2",
    ),
    "evaluate with disjoint ids": (
        {
            "test.csv": b"user_id,item_id,rating\n1,10,5\n2,10,4\n",
            "recs.csv": b"user_id,item_id,rank\nu1,10,1\nu2,10,1\n",
        },
        ["evaluate", "--test", "{tmp}/test.csv", "--recs", "{tmp}/recs.csv"],
        "none of its 2 users is a user of",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_cached(name, tmp_path, monkeypatch, capsys):
    files, argv, needle = CASES[name]
    for file, content in files.items():
        (tmp_path / file).write_bytes(content)
    if name == "rating outside u.data scale":
        _ml100k(tmp_path / "ml", "1\t10\t4\t881250949\n2\t10\t9\t881250950\n")
    home = tmp_path / "home"
    monkeypatch.setenv("E2EP_HOME", str(home))

    def no_prefect():
        raise AssertionError("the flow started on bad input")

    monkeypatch.setattr(e2ep.prefect_server, "temporary_server", no_prefect)
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("e2ep: error: "), err
    assert needle.replace("{tmp}", str(tmp_path)) in err
    assert not home.exists() or not any(p.is_file() for p in home.rglob("*")), "something was cached"


def test_movielens_current_csv_files_just_work(tmp_path, capsys):
    """MovieLens' own `ratings.csv` / `movies.csv` (camelCase ids, half stars, years in titles, no-genre marker),
    tab- and `::`-separated variants too, and the columns used are named."""
    (tmp_path / "ratings.csv").write_text(RATINGS)
    (tmp_path / "ratings.tsv").write_text(RATINGS.replace(",", "\t").replace("userId", "USER_ID"))
    (tmp_path / "ratings.dat").write_text(RATINGS.replace(",", "::").replace("rating", "Score"))
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n10,Heat (1995),Action|Crime\n"
        '20,"Toy Story, The (1995)",Animation\n30,Odd,(no genres listed)\n'
    )
    frames = []
    for ratings in ("ratings.csv", "ratings.tsv", "ratings.dat"):
        ds = load_dataset(
            DatasetConfig(name="csv", ratings_path=str(tmp_path / ratings), items_path=str(tmp_path / "movies.csv"))
        )
        frames.append(ds.ratings)
        assert ds.ratings["rating"].to_list() == [4.5, 2.5, 3.0, 5.0]
    assert frames[0].equals(frames[1]) and frames[0].equals(frames[2])
    items = ds.items.sort("item_id")
    assert items["year"].to_list() == [1995, 1995, None]
    assert items["title"].to_list()[0] == "Heat (1995)"  # kept as in the file, as for the MovieLens archives
    assert items["genres"].to_list() == ["Action|Crime", "Animation", None]

    assert main(["fetch", "--dataset", "csv", "--ratings", str(tmp_path / "ratings.tsv")]) == 0
    err = capsys.readouterr().err
    assert "ratings.tsv: tab-separated; columns used: user_id=USER_ID, item_id=movieId, rating=rating" in err


def test_rating_scale_can_be_widened(tmp_path):
    (tmp_path / "r.csv").write_text("user_id,item_id,rating\n1,2,4\n1,3,7\n")
    ds = load_dataset(DatasetConfig(name="csv", ratings_path=str(tmp_path / "r.csv"), rating_scale=(1, 10)))
    assert ds.ratings["rating"].to_list() == [4.0, 7.0]


@pytest.mark.parametrize(
    ("genres", "sentence"),
    [
        (["Action"], "An action film."),
        (["Drama", "Action"], "A drama, action film."),
        (["Unknown"], "An unknown film."),
    ],
)
def test_template_item_profile_article(genres, sentence):
    assert sentence in template_item_profile({"title": "X", "genres": genres})


def test_evaluate_warns_on_tied_ranks(tmp_path, capsys):
    (tmp_path / "test.csv").write_text("user_id,item_id,rating\n1,10,5\n1,20,4\n")
    (tmp_path / "recs.csv").write_text("user_id,item_id,rank\n1,10,1\n1,20,1\n")
    assert (
        main(
            [
                "evaluate",
                "--test",
                str(tmp_path / "test.csv"),
                "--recs",
                str(tmp_path / "recs.csv"),
                "--k",
                "1",
                "--json",
            ]
        )
        == 0
    )
    report = capsys.readouterr().out
    assert '"recs_duplicate_ranks": 1' in report and "share a rank" in report


def test_summary_states_the_rating_thresholds():
    from evaluation.report import thresholds
    from flows.config import load_config, resolve_auto, run_settings

    def settings(overrides):
        return run_settings(resolve_auto(load_config(None, overrides)))

    line = thresholds(settings({"dataset.name": "csv", "dataset.ratings_path": "r.csv"}))
    assert line == (
        "Ratings ≥ 4 are positive (training edges; relevant in test), ≤ 2 negative, in between "
        "(2.5, 3, 3.5) neutral (rating scale 0.5-5)"
    )
    assert "in between (3) neutral (rating scale 1-5)" in thresholds(settings({}))
