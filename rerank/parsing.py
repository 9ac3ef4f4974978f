"""Strict parsing of judge answers: only candidate ids count, and every rule break is a ValueError.

The LLM gateway answers a ValueError with one repair request (quoting the message), and a second failure with
LLMOutputError, after which the strategy uses the base model's order for that unit. Candidates are named `M<item
index>` in prompts; anything else in an answer is ignored except where it breaks the format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from semantic.profiles.schema import strip_fences

ID = re.compile(r"\bM(\d+)\b")
SCORE = re.compile(r"\bM(\d+)\b[\"']?\s*[:=]\s*\"?(-?\d+(?:\.\d+)?)")
MAX_EXPLANATION = 400


def label(item: int) -> str:
    return f"M{item}"


def _ids(text: str) -> list[int]:
    return [int(m) for m in ID.findall(text)]


def _check(found: Sequence[int], items: Sequence[int], what: str) -> None:
    """Unknown, duplicated and missing ids, all named in one message (so the repair request can fix them)."""
    allowed = set(items)
    unknown = sorted(set(found) - allowed)
    seen: set[int] = set()
    dup = sorted({i for i in found if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    missing = [i for i in items if i not in seen]
    problems = []
    if unknown:
        problems.append("unknown id(s) " + ", ".join(map(label, unknown)))
    if dup:
        problems.append("repeated id(s) " + ", ".join(map(label, dup)))
    if missing:
        problems.append("missing id(s) " + ", ".join(map(label, missing)))
    if problems:
        raise ValueError(
            f"{what} must name each of {', '.join(map(label, items))} exactly once and no other id: "
            + "; ".join(problems)
        )


def parse_order(text: str, items: Sequence[int]) -> list[int]:
    """The candidates in the answer's order; the answer must name every candidate exactly once and nothing else."""
    found = _ids(strip_fences(text))
    _check(found, items, "the ranking")
    return found


def parse_choice(text: str, a: int, b: int) -> int:
    """The one candidate the answer names (it may repeat it); naming both, neither or any other id is invalid."""
    found = set(_ids(strip_fences(text)))
    if found - {a, b}:
        raise ValueError(
            f"answer with {label(a)} or {label(b)} only; unknown id(s) " + ", ".join(map(label, sorted(found - {a, b})))
        )
    if len(found) != 1:
        raise ValueError(f"answer with exactly one id, {label(a)} or {label(b)}")
    return found.pop()


def parse_scores(text: str, items: Sequence[int]) -> dict[int, float]:
    """`M<id>: <score>` for every candidate exactly once, scores within 0-100; no other id may appear."""
    body = strip_fences(text)
    pairs = [(int(i), float(s)) for i, s in SCORE.findall(body)]
    if len(pairs) != len(_ids(body)):
        raise ValueError("write every id as `M<id>: <score>`; an id without a score is invalid")
    _check([i for i, _ in pairs], items, "the scores")
    bad = [label(i) for i, s in pairs if not 0 <= s <= 100]
    if bad:
        raise ValueError(f"scores must lie within 0-100: {', '.join(bad)}")
    return dict(pairs)


def parse_explanations(text: str, items: Sequence[int]) -> dict[int, str]:
    """A JSON object `{"M<id>": "<sentence>"}` with exactly the given ids and non-empty strings."""
    body = strip_fences(text)
    start, end = body.find("{"), body.rfind("}")
    try:
        data = json.loads(body[start : end + 1]) if start >= 0 and end > start else None
    except json.JSONDecodeError as exc:
        raise ValueError(f"answer with one JSON object: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError('answer with one JSON object {"M<id>": "<explanation>", ...}')
    keys = []
    for key in data:
        match = re.fullmatch(r"\s*M(\d+)\s*", str(key))
        if not match:
            raise ValueError(f"JSON keys must be candidate ids like {label(items[0])}; got {str(key)[:40]!r}")
        keys.append(int(match.group(1)))
    _check(keys, items, "the explanations")
    out = {}
    for key, value in zip(keys, data.values(), strict=True):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"the explanation of {label(key)} must be a non-empty string")
        out[key] = " ".join(value.split())[:MAX_EXPLANATION]
    return out
