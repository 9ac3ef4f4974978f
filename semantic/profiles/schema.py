"""The unified Markdown profile shared by items and users (paper section 2.1.3).

    # <Name>
    ## Overview       core narrative / taste in a few sentences
    ## Attributes     `- Genre: ...` and `- Tags: ...` (descriptive tags)
    ## Description    expanded narrative and character-focused detail
    ## Dislikes       attributes that do not fit

The parser is lenient about what LLMs and the authors' published files do (`## Dislikes:`, `**Genre**`, code
fences, a missing `# Name`); the validator insists only on the four sections being present and non-empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SECTIONS = ("Overview", "Attributes", "Description", "Dislikes")
NAME = "Name"

_HEADING = re.compile(r"^(#{1,6})\s*(.*?)\s*:?\s*$")
_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n\s*```\s*$", re.S)
_CANONICAL = {s.lower(): s for s in SECTIONS}


def strip_fences(text: str) -> str:
    """The text inside a single enclosing ``` fence (LLMs like to add one), else the text itself, trimmed."""
    text = text.strip()
    match = _FENCE.match(text)
    return match.group(1).strip() if match else text


def parse_profile(text: str) -> dict[str, str]:
    """Sections by canonical name (`Name` for the `# ` title), each body stripped; unknown `##` sections are kept
    under their own heading. Text before any heading is ignored unless it is the only content."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in strip_fences(text).splitlines():
        heading = _HEADING.match(line)
        if heading and heading.group(2):
            level, title = len(heading.group(1)), heading.group(2).strip("*_ ").rstrip(":").strip()
            if level == 1 and NAME not in sections:
                sections[NAME] = [title]
                current = None
                continue
            current = _CANONICAL.get(title.lower(), title)
            sections.setdefault(current, [])
            continue
        if current is not None:
            sections[current].append(line)
    return {key: "\n".join(lines).strip() for key, lines in sections.items()}


def missing_sections(text: str) -> list[str]:
    parsed = parse_profile(text)
    return [s for s in SECTIONS if not parsed.get(s)]


def validate_profile(text: str) -> str:
    """The profile (fences removed, trimmed) if all four sections are present and non-empty, else ValueError naming
    those that are missing or empty. Usable as the LLM gateway's `validate`, so a bad answer is retried."""
    if not isinstance(text, str):
        raise ValueError(f"profile must be text, got {type(text).__name__}")
    parsed = parse_profile(text)
    missing = [s for s in SECTIONS if s not in parsed]
    empty = [s for s in SECTIONS if s in parsed and not parsed[s]]
    if missing or empty:
        parts = []
        if missing:
            parts.append(f"missing section(s): {', '.join(missing)}")
        if empty:
            parts.append(f"empty section(s): {', '.join(empty)}")
        raise ValueError(
            "profile does not follow the schema (# Name, ## Overview, ## Attributes, ## Description, ## Dislikes): "
            + "; ".join(parts)
        )
    return strip_fences(text)


def render_profile(
    name: str, overview: str, genres: Iterable[str], tags: Iterable[str], description: str, dislikes: str
) -> str:
    """A profile in the unified schema."""
    genre_text = ", ".join(genres) or "Unknown"
    tag_text = ", ".join(tags) or "None"
    return (
        f"# {name}\n\n## Overview\n{overview}\n\n## Attributes\n- Genre: {genre_text}\n- Tags: {tag_text}\n\n"
        f"## Description\n{description}\n\n## Dislikes\n{dislikes}\n"
    )


_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_LABEL = re.compile(r"^\s*\**\s*([A-Za-z][\w /-]{0,30}?)\s*\**\s*:\s*\**\s*(.*)$")


def _flatten(body: str) -> str:
    """Bullet lists become one sentence per bullet (`Genre: a, b.`); emphasis markers go; lines are joined."""
    sentences: list[str] = []
    loose: list[str] = []
    for raw in body.splitlines():
        line = raw.strip()
        if not line:
            continue
        is_bullet = bool(_BULLET.match(line))
        line = _BULLET.sub("", line).replace("**", "").replace("__", "").strip()
        if is_bullet:
            loose.append(line.rstrip(". "))
        else:
            if loose:
                sentences.append(", ".join(loose) + ".")
                loose = []
            sentences.append(line)
    if loose:
        # Labelled bullets ("Genre: a, b") stay separate sentences; plain ones ("Violence") form one list.
        if all(_LABEL.match(item) for item in loose):
            sentences.extend(item + "." for item in loose)
        else:
            sentences.append(", ".join(loose) + ".")
    return " ".join(sentences)


def integrated(profile: str) -> str:
    """The same facts as flat prose, without the Markdown structure (the paper's "integrated" representation)."""
    parsed = parse_profile(profile)
    if not any(parsed.get(s) for s in SECTIONS):
        return " ".join(strip_fences(profile).split())
    parts = [f"{parsed[NAME]}." if parsed.get(NAME) else ""]
    for key, body in parsed.items():
        if key == NAME or not body:
            continue
        text = _flatten(body)
        if key == "Dislikes":
            text = f"Dislikes: {text}"
        parts.append(text)
    return " ".join(p for p in parts if p)
