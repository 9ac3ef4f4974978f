"""MovieLens titles to search queries: "Usual Suspects, The (1995)" -> "The Usual Suspects", 1995."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Articles MovieLens moves behind a comma ("Postino, Il", "Enfer, L'"), in the languages its titles use.
_ARTICLES = (
    "The", "A", "An", "Les", "La", "Le", "L'", "Il", "Lo", "Gli", "El", "Los", "Las",
    "Das", "Der", "Die", "Den", "Det", "Het", "Un", "Une", "Ein", "Eine",
)  # fmt: skip
_TRAILING_ARTICLE = re.compile(r"^(?P<body>.+), (?P<article>" + "|".join(re.escape(a) for a in _ARTICLES) + r")$")
_YEAR = re.compile(r"\s*\((?P<year>\d{4})(?:[-/–]\d{2,4})?\)\s*$")
_MARKER = re.compile(r"\s*\((?:V|TV|TV series|mini)\)\s*$", re.IGNORECASE)
_LAST_PARENS = re.compile(r"^(?P<head>.*\S)\s*\((?P<inner>[^()]+)\)\s*$")
_AKA = re.compile(r"^\s*(?:a\.?k\.?a\.?|also known as)\s+", re.IGNORECASE)


@dataclass(frozen=True)
class SearchTitle:
    """What to search for: the main title, other titles to try if it finds nothing, and the year (if known)."""

    primary: str
    alternates: tuple[str, ...]
    year: int | None

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.primary, *self.alternates)


def clean_title(raw: str) -> SearchTitle:
    """Split a MovieLens title into a natural-order title, alternate titles from parentheses, and the year.

    "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
        -> SearchTitle("The City of Lost Children", ("La Cité des enfants perdus",), 1995)
    """
    text = " ".join(raw.split())
    text = _MARKER.sub("", text)
    year = None
    if match := _YEAR.search(text):
        year = int(match["year"])
        text = text[: match.start()]
    text = _MARKER.sub("", text)
    alternates: list[str] = []
    # Peel trailing "(...)" groups, keeping a head behind: "Seven (Se7en)" -> "Seven" + "Se7en".
    while (match := _LAST_PARENS.match(text)) and not _YEAR.fullmatch(f"({match['inner']})"):
        alternates.insert(0, _natural_order(_AKA.sub("", match["inner"])))
        text = match["head"]
    primary = _natural_order(text)
    if not primary:  # a title that was only parentheses: search for its first alternate instead
        primary, alternates = (alternates[0], alternates[1:]) if alternates else (raw.strip(), [])
    unique = tuple(dict.fromkeys(a for a in alternates if a and a.casefold() != primary.casefold()))
    return SearchTitle(primary, unique, year)


def _natural_order(title: str) -> str:
    """Move a trailing article to the front: "Godfather: Part II, The" -> "The Godfather: Part II"."""
    title = title.strip()
    match = _TRAILING_ARTICLE.match(title)
    if not match:
        return title
    article = match["article"]
    return f"{article}{match['body']}" if article.endswith("'") else f"{article} {match['body']}"


def normalise(title: str) -> str:
    """Comparison key: accents, case, punctuation and a leading English article do not matter."""
    folded = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().casefold()
    folded = re.sub(r"&", " and ", folded)
    folded = re.sub(r"[^a-z0-9]+", " ", folded).strip()
    return re.sub(r"^(the|a|an) ", "", folded)
