"""The cold-start protocol: chosen users keep exactly their first n training ratings by time, nobody else changes,
and the truncated users' profiles are built from the kept ratings only."""

import numpy as np
import polars as pl

from data.splits import Fold, cold_start_fold, cold_start_plan
from semantic.profiles import ProfilesConfig, user_profiles
from tests.profiles_fakes import items_frame

NS = [1, 3, 5]


def _fold(n_users: int = 40, per_user: int = 12, seed: int = 0) -> Fold:
    """Random ratings with shuffled timestamps (row order says nothing about time); every user has test ratings
    except the last, and users 0-1 have too few training ratings to be truncated."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for u in range(n_users):
        count = 4 if u < 2 else per_user
        items = rng.choice(30, count + 2, replace=False)
        times = rng.permutation(1000)[:count]
        for i, t in zip(items[:count], times, strict=True):
            train.append((u, int(i), float(rng.integers(1, 6)), int(t), bool(rng.random() < 0.2)))
        if u < n_users - 1:
            test += [(u, int(i), 5.0, 5000) for i in items[count:]]
    schema = {"user_idx": pl.Int32, "item_idx": pl.Int32, "rating": pl.Float64, "timestamp": pl.Int64}
    return Fold(
        1,
        pl.DataFrame(train, schema={**schema, "is_validation": pl.Boolean}, orient="row"),
        pl.DataFrame(test, schema=schema, orient="row"),
    )


def test_chosen_users_keep_exactly_their_first_n_ratings_and_others_are_untouched():
    fold = _fold()
    truncated, plan = cold_start_fold(fold, 0.5, NS, seed=3)
    eligible = set(range(2, 39))  # test users with more than max(n) training ratings
    assert set(plan["user_idx"]) <= eligible and plan.height == int(0.5 * len(eligible) + 0.5)  # half-up
    assert sorted(plan["n"].value_counts()["count"]) in ([6, 6, 6], [6, 6, 7])  # one group per n, balanced
    for user, n in plan.iter_rows():
        original = fold.train.filter(pl.col("user_idx") == user).sort("timestamp")
        kept = truncated.train.filter(pl.col("user_idx") == user)
        assert kept.height == n
        assert set(kept["item_idx"]) == set(original["item_idx"].head(n))
        assert not kept["is_validation"].any()  # too new to have a validation slice
    others = ~pl.col("user_idx").is_in(plan["user_idx"].implode())
    assert truncated.train.filter(others).equals(fold.train.filter(others))
    assert truncated.test.equals(fold.test)
    # Seeded: the same seed draws the same users, another seed others.
    assert cold_start_plan(fold, 0.5, NS, seed=3).equals(plan)
    assert not cold_start_plan(fold, 0.5, NS, seed=4).equals(plan)


def test_ratings_without_timestamps_truncate_nobody():
    fold = _fold()
    undated = Fold(1, fold.train.with_columns(timestamp=pl.lit(None, pl.Int64)), fold.test)
    truncated, plan = cold_start_fold(undated, 0.5, NS, seed=3)
    assert plan.is_empty() and truncated.train.equals(undated.train)


def test_truncated_users_profiles_see_only_their_kept_ratings():
    fold = _fold()
    truncated, plan = cold_start_fold(fold, 0.5, NS, seed=3)
    cfg = ProfilesConfig(backend="template")
    after = user_profiles(truncated, items_frame(), cfg).frame
    before = user_profiles(fold, items_frame(), cfg).frame
    chosen = set(plan["user_idx"].to_list())
    for user in chosen:
        alone = Fold(1, truncated.train.filter(pl.col("user_idx") == user), truncated.test.head(0))
        only_kept = user_profiles(alone, items_frame(), cfg).frame.filter(pl.col("user_idx") == user)
        assert after.filter(pl.col("user_idx") == user)["profile"].equals(only_kept["profile"])
    changed = (
        after.join(before, on="user_idx", suffix="_before")
        .filter(pl.col("profile") != pl.col("profile_before"))["user_idx"]
        .to_list()
    )
    assert changed and set(changed) <= chosen
