"""Shared test doubles for the profile tests: a deterministic chat gateway and tiny item/fold frames."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import polars as pl

from data.splits import Fold
from e2ep.llm import LLMOutputError


@dataclass(frozen=True)
class FakeResult:
    value: str


class FakeGateway:
    """Answers every request with a schema-valid profile that names a digest of the request; records requests.
    Same call shape as `e2ep.llm.LLMGateway.complete_many`.

    fail_when: requests whose user message contains this substring get an LLMOutputError as their result.
    """

    def __init__(self, fail_when: str | None = None) -> None:
        self.calls: list[dict] = []
        self.requests: list[list[dict[str, str]]] = []
        self.fail_when = fail_when

    def _answer(self, messages, validate):
        user = messages[-1]["content"]
        if self.fail_when and self.fail_when in user:
            return LLMOutputError("validation failed after the repair request")
        digest = hashlib.sha256(user.encode()).hexdigest()[:12]
        text = (
            f"# Profile {digest}\n\n## Overview\nTurn {digest}.\n\n## Attributes\n- Genre: Drama\n- Tags: heist\n\n"
            f"## Description\nDescribed {digest}.\n\n## Dislikes\nHorror\n"
        )
        return FakeResult(validate(text) if validate else text)

    def complete_many(self, prompts, stage="default", validate=None, params=None, return_exceptions=False):
        self.calls.append({"stage": stage, "n": len(prompts), "params": params or {}})
        self.requests.extend(prompts)
        answers = [self._answer(m, validate) for m in prompts]
        if not return_exceptions and any(isinstance(a, Exception) for a in answers):
            raise next(a for a in answers if isinstance(a, Exception))
        return answers


def items_frame(n: int = 30) -> pl.DataFrame:
    """Metadata in `enrich_items`' shape: item i has genre G{i % 3} and keyword k{i}."""
    return pl.DataFrame(
        {
            "item_idx": list(range(n)),
            "title": [f"Movie {i}, The ({1990 + i % 10})" for i in range(n)],
            "year": [1990 + i % 10 for i in range(n)],
            "genres": [[f"G{i % 3}", "Drama"] if i % 2 else [f"G{i % 3}"] for i in range(n)],
            "overview": [None if i == 0 else f"Plot of movie {i}." for i in range(n)],
            "keywords": [[f"k{i}"] for i in range(n)],
            "director": [f"Director {i}" for i in range(n)],
            "cast": [[f"Actor {i}", f"Actor {i + 1}"] for i in range(n)],
            "tmdb_id": list(range(1000, 1000 + n)),
            "metadata_source": ["test"] * n,
        },
        schema_overrides={"item_idx": pl.Int32, "year": pl.Int32},
    )


def ratings(rows: list[tuple[int, int, float, int]], validation: bool = False) -> pl.DataFrame:
    frame = pl.DataFrame(
        rows,
        schema={"user_idx": pl.Int32, "item_idx": pl.Int32, "rating": pl.Float32, "timestamp": pl.Int64},
        orient="row",
    )
    return frame.with_columns(is_validation=pl.lit(False)) if validation else frame


def fold(train_rows, test_rows=(), number: int = 1) -> Fold:
    return Fold(number, ratings(list(train_rows), validation=True), ratings(list(test_rows)))
