"""Profiles from the metadata alone, no LLM: the template backend, and the fallback of every LLM or precomputed
profile that is missing."""

from __future__ import annotations

import re
from typing import Any

from semantic.profiles.schema import render_profile

_TRAILING_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_ARTICLE = re.compile(r"^(.*), (The|A|An|Les|La|Le|Il|El|Das|Der|Die)$")


def display_title(title: str | None) -> str:
    """`Usual Suspects, The (1995)` -> `The Usual Suspects`."""
    if not title:
        return "Unknown title"
    name = _TRAILING_YEAR.sub("", title).strip()
    match = _ARTICLE.match(name)
    return f"{match.group(2)} {match.group(1)}" if match else name


def clean_text(value: Any) -> str:
    """`value` as one line of single-spaced text ("" for None)."""
    return " ".join(str(value).split()) if value is not None else ""


def template_item_profile(row: dict[str, Any]) -> str:
    """A deterministic profile from the metadata alone, no LLM."""
    genres = list(row.get("genres") or [])
    keywords = list(row.get("keywords") or [])
    facts = []
    if row.get("year"):
        facts.append(f"Released in {row['year']}.")
    if row.get("director"):
        facts.append(f"Directed by {clean_text(row['director'])}.")
    if row.get("cast"):
        facts.append(f"Starring {', '.join(row['cast'][:5])}.")
    if genres:
        kinds = ", ".join(g.lower() for g in genres)
        facts.append(f"{'An' if kinds[:1] in ('a', 'e', 'i', 'o', 'u') else 'A'} {kinds} film.")
    dislikes = f"Viewers who dislike {', '.join(genres)} films." if genres else "Unknown: no genre information."
    return render_profile(
        display_title(row.get("title")),
        clean_text(row.get("overview")) or "Unknown",
        genres,
        keywords,
        " ".join(facts) or "No further information.",
        dislikes,
    )
