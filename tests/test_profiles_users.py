import math

import polars as pl
import pytest

from e2ep.errors import ConfigError
from semantic.profiles import ProfilesConfig, parse_profile, select_rated, user_profiles, validate_profile
from semantic.profiles.users import training_ratings
from tests.profiles_fakes import FakeGateway, fold, items_frame

# User 0: 14 liked (ratings 5 and 4), 12 disliked (1 and 2), 3 neutral. User 1: only neutral ratings.
TRAIN = (
    [(0, i, 5.0, 100 + i) for i in range(6)]  # items 0-5, rating 5, later = more recent
    + [(0, i, 4.0, 100) for i in range(6, 14)]  # items 6-13, rating 4, same timestamp: item_idx breaks ties
    + [(0, i, 1.0, 50) for i in range(14, 20)]  # items 14-19, rating 1
    + [(0, i, 2.0, 50 + i) for i in range(20, 26)]  # items 20-25, rating 2
    + [(0, i, 3.0, 1) for i in range(26, 29)]
    + [(1, 0, 3.0, 1), (1, 1, 3.0, 2)]
)
# Test ratings that would displace training picks if they were ever read.
TEST = [(0, 29, 5.0, 10_000), (0, 28, 1.0, 10_000), (1, 2, 5.0, 10_000)]


def test_selection_is_exactly_top_and_bottom_ten():
    chosen = select_rated(training_ratings(fold(TRAIN), ProfilesConfig()), ProfilesConfig())
    user0 = chosen.filter(pl.col("user_idx") == 0)
    liked = user0.filter(pl.col("kind") == "liked")["item_idx"].to_list()
    disliked = user0.filter(pl.col("kind") == "disliked")["item_idx"].to_list()
    assert liked == [5, 4, 3, 2, 1, 0, 6, 7, 8, 9]  # rating desc, timestamp desc, item_idx asc
    assert disliked == [14, 15, 16, 17, 18, 19, 25, 24, 23, 22]  # rating asc, most recent, item_idx
    assert chosen.filter(pl.col("user_idx") == 1).is_empty()


def test_test_ratings_are_never_used():
    cfg = ProfilesConfig()
    with_test = user_profiles(fold(TRAIN, TEST), items_frame(), cfg)
    without = user_profiles(fold(TRAIN), items_frame(), cfg)
    assert with_test.frame.equals(without.frame)
    assert "Movie 29" not in with_test.frame["profile"][0]
    gateway_a, gateway_b = FakeGateway(), FakeGateway()
    user_profiles(fold(TRAIN, TEST), items_frame(), ProfilesConfig(backend="llm"), gateway=gateway_a)
    user_profiles(fold(TRAIN), items_frame(), ProfilesConfig(backend="llm"), gateway=gateway_b)
    assert gateway_a.requests == gateway_b.requests


def test_validation_slice_is_left_out_unless_included():
    train = fold(TRAIN).train.with_columns(is_validation=pl.col("item_idx") == 5)
    f = type(fold(TRAIN))(1, train, fold(TRAIN).test)
    assert 5 not in select_rated(training_ratings(f, ProfilesConfig()), ProfilesConfig())["item_idx"].to_list()
    cfg = ProfilesConfig(include_validation=True)
    assert 5 in select_rated(training_ratings(f, cfg), cfg)["item_idx"].to_list()


def test_template_user_profile_from_rating_statistics():
    result = user_profiles(fold(TRAIN), items_frame(), ProfilesConfig(), n_users=3)
    assert result.frame["user_idx"].to_list() == [0, 1, 2]
    assert result.frame["profile_source"].to_list() == ["template", "minimal", "minimal"]
    assert result.counts == {"minimal": 2, "template": 1}
    p0 = parse_profile(result.frame["profile"][0])
    # Liked items 0-9: genre G{i%3} -> G0 x4 (0,3,6,9), G1 x3, G2 x3; Drama for odd items x5.
    assert "- Genre: Drama, G0, G1, G2" in p0["Attributes"]
    assert "The Movie 5" in p0["Description"] and "The Movie 10" not in p0["Description"]
    assert "The Movie 19" in p0["Dislikes"] and "The Movie 21" not in p0["Dislikes"]
    assert "preferences unknown" in parse_profile(result.frame["profile"][1])["Overview"]
    for text in result.frame["profile"]:
        validate_profile(text)
    assert result.frame.equals(user_profiles(fold(TRAIN), items_frame(), ProfilesConfig(), n_users=3).frame)


def test_multi_turn_llm_profiles_carry_the_previous_profile():
    gateway = FakeGateway()
    cfg = ProfilesConfig(backend="llm", n_liked=7, n_disliked=6)  # user 0: 13 movies -> 3 turns of 5, 5, 3
    result = user_profiles(fold(TRAIN), items_frame(), cfg, gateway=gateway)
    assert [c["n"] for c in gateway.calls] == [1] * math.ceil(13 / 5)
    assert all(c["stage"] == "user_profiles" for c in gateway.calls)
    prompts = [r[-1]["content"] for r in gateway.requests]
    assert "No profile exists yet" in prompts[0]
    for turn in (1, 2):
        previous = gateway._answer(gateway.requests[turn - 1], validate_profile).value
        assert previous.strip() in prompts[turn]
    assert prompts[0].count("\n- ") == 5 and prompts[2].count("rated ") == 3
    assert "(liked)" in prompts[0] and "(disliked)" in prompts[2]
    assert result.frame["profile"][0] == gateway._answer(gateway.requests[-1], validate_profile).value
    assert result.frame["profile_source"].to_list() == ["llm", "minimal"]
    assert result.counts["llm_turns"] == 3


def test_failed_turn_falls_back_to_template():
    gateway = FakeGateway(fail_when="Profile so far")
    result = user_profiles(fold(TRAIN), items_frame(), ProfilesConfig(backend="llm"), gateway=gateway)
    assert result.frame["profile_source"][0] == "template_fallback"
    assert len(gateway.calls) == 2  # the failing user is not asked again


def test_precomputed_users_only_for_their_fold():
    cfg = ProfilesConfig(backend="precomputed", precomputed_users_path="unused.csv")
    with pytest.raises(ConfigError, match="fold 1"):
        user_profiles(fold(TRAIN, number=2), items_frame(), cfg)
