import pytest

from semantic.profiles.schema import SECTIONS, integrated, parse_profile, render_profile, validate_profile

GOOD = """# Heat

## Overview
A master thief and a detective collide in Los Angeles.

## Attributes
- Genre: Crime, Thriller
- Tags: heist, anti-hero, cat and mouse

## Description
Two obsessive professionals mirror each other.

## Dislikes
Slapstick comedy, musicals
"""


def test_parse_good_profile():
    parsed = parse_profile(GOOD)
    assert parsed["Name"] == "Heat"
    assert list(s for s in parsed if s != "Name") == list(SECTIONS)
    assert "heist" in parsed["Attributes"]
    assert validate_profile(GOOD) == GOOD.strip()


def test_parse_is_lenient_about_llm_and_published_variants():
    text = "```markdown\n" + GOOD.replace("## Dislikes", "## **Dislikes**:").replace("# Heat\n", "") + "```"
    parsed = parse_profile(text)
    assert parsed["Dislikes"].startswith("Slapstick") and "Name" not in parsed
    assert validate_profile(text).startswith("## Overview")


def test_missing_section_is_named():
    with pytest.raises(ValueError, match=r"missing section\(s\): Description"):
        validate_profile(GOOD.replace("## Description\nTwo obsessive professionals mirror each other.\n", ""))


def test_empty_section_is_named():
    with pytest.raises(ValueError, match=r"empty section\(s\): Dislikes"):
        validate_profile(GOOD.replace("Slapstick comedy, musicals", "   "))
    with pytest.raises(ValueError, match="missing section"):
        validate_profile("just some prose")


def test_integrated_keeps_the_facts_as_flat_prose():
    flat = integrated(GOOD)
    assert "#" not in flat and "\n" not in flat and "- " not in flat
    for fact in ("Heat", "master thief", "Genre: Crime, Thriller", "heist, anti-hero", "mirror", "Slapstick"):
        assert fact in flat
    assert "Dislikes: Slapstick comedy, musicals" in flat


def test_render_round_trips():
    text = render_profile("X", "o", ["A", "B"], [], "d", "n")
    assert validate_profile(text)
    assert parse_profile(text)["Attributes"] == "- Genre: A, B\n- Tags: None"
