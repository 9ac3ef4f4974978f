import polars as pl
import pytest

from e2ep.errors import ConfigError
from semantic.profiles import ChatGateway, ProfilesConfig, item_profiles, parse_profile, validate_profile
from semantic.profiles.items import item_prompt, normalise_items
from tests.profiles_fakes import FakeGateway, items_frame


def test_template_item_profiles_are_deterministic_and_labelled():
    items = items_frame(6)
    first = item_profiles(items, ProfilesConfig())
    second = item_profiles(items.reverse(), ProfilesConfig())
    assert first.frame.equals(second.frame)
    assert first.frame.columns == ["item_idx", "profile", "text", "profile_source"]
    assert first.counts == {"template": 6}
    assert (first.frame["text"] == first.frame["profile"]).all()
    p1 = parse_profile(first.frame["profile"][1])
    assert p1["Name"] == "The Movie 1"
    assert p1["Overview"] == "Plot of movie 1."
    assert "- Genre: G1, Drama" in p1["Attributes"] and "- Tags: k1" in p1["Attributes"]
    assert "Director 1" in p1["Description"] and "Actor 1" in p1["Description"] and "1991" in p1["Description"]
    assert p1["Dislikes"] == "Viewers who dislike G1, Drama films."
    assert parse_profile(first.frame["profile"][0])["Overview"] == "Unknown"
    for text in first.frame["profile"]:
        validate_profile(text)


def test_dataset_items_shape_is_accepted():
    ds_items = pl.DataFrame(
        {"item_idx": [0], "item_id": [1], "title": ["Heat (1995)"], "year": [1995], "genres": ["Action|Crime"]}
    )
    meta = normalise_items(ds_items)
    assert meta["genres"].to_list() == [["Action", "Crime"]] and meta["keywords"].to_list() == [[]]
    assert "Crime" in item_profiles(ds_items, ProfilesConfig()).frame["profile"][0]


def test_integrated_representation_embeds_prose():
    result = item_profiles(items_frame(3), ProfilesConfig(representation="integrated"))
    assert not result.frame["text"].str.contains("## ").any()
    assert result.frame["profile"].str.contains("## Overview").all()


def test_llm_item_profiles_use_the_gateway_with_validation():
    gateway = FakeGateway(fail_when="Movie 2")
    assert isinstance(gateway, ChatGateway)
    result = item_profiles(items_frame(4), ProfilesConfig(backend="llm"), gateway=gateway)
    assert gateway.calls == [{"stage": "item_profiles", "n": 4, "params": {"temperature": 0.7, "max_tokens": 700}}]
    assert result.frame["profile_source"].to_list() == ["llm", "llm", "template_fallback", "llm"]
    assert result.counts == {"llm": 3, "template_fallback": 1}
    prompt = gateway.requests[3][-1]["content"]
    for fact in ("The Movie 3", "1993", "G0, Drama", "k3", "Director 3", "Actor 3", "Plot of movie 3."):
        assert fact in prompt
    assert "time travel" in gateway.requests[3][0]["content"] and "anti-hero" in gateway.requests[3][0]["content"]


def test_llm_backend_needs_a_gateway():
    with pytest.raises(ConfigError):
        item_profiles(items_frame(2), ProfilesConfig(backend="llm"))


def test_prompt_is_content_only():
    row = normalise_items(items_frame(3)).to_dicts()[1]
    assert item_prompt(row) == item_prompt(dict(row, item_idx=99))
