"""Cost estimates of the profile stages, from the very prompts `item_profiles` / `user_profiles` would send.

Item profiles: one request per distinct item prompt, exact. User profiles: one request per turn, and the turns per
user are known from the training ratings; the first turn's prompt is exact, a later turn carries the profile the
previous turn wrote. Where the memo holds that answer the next prompt is exact again (and free); otherwise the later
turns are built with the user's template profile in the previous profile's place and their prompt tokens corrected
by the expected profile length.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from data.splits import Fold
from e2ep.llm.estimate import Estimator, StageEstimate
from semantic.profiles.common import Messages
from semantic.profiles.config import ProfilesConfig
from semantic.profiles.items import item_prompt, normalise_items
from semantic.profiles.schema import validate_profile
from semantic.profiles.users import llm_users, rated_movies, template_user_profile, turn_batches, user_prompt

PROFILE_COMPLETION_TOKENS = 350
"""Expected length of one LLM-written profile when the memo has none to measure (the schema's four sections at the
lengths the system prompt asks for run to roughly 250-450 tokens); capped by `profiles.max_tokens`."""


def profile_params(cfg: ProfilesConfig) -> dict[str, Any]:
    """The generation parameters `ask_many` sends (and so part of the memo key)."""
    return {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}


def _completion(cfg: ProfilesConfig, measured: list[int]) -> float:
    if measured:
        return sum(measured) / len(measured)
    return float(min(cfg.max_tokens, PROFILE_COMPLETION_TOKENS))


def item_profiles_estimate(
    est: Estimator, items: pl.DataFrame, cfg: ProfilesConfig, stage: str = "item_profiles"
) -> StageEstimate:
    params = profile_params(cfg)
    seen: set[str] = set()
    paid: list[Messages] = []
    cached, saved, measured = 0, 0.0, []
    for row in normalise_items(items).to_dicts():
        prompt = item_prompt(row)
        key = est.key(prompt, params)
        if key in seen:  # complete_many asks identical prompts once
            continue
        seen.add(key)
        hit = est.cached(prompt, params, validate_profile)
        if hit is None:
            paid.append(prompt)
        else:
            cached, saved = cached + 1, saved + float(hit.get("cost_usd") or 0.0)
            measured.append(int(hit["usage"]["completion_tokens"]))
    return est.paid(stage, paid, _completion(cfg, measured), cached_calls=cached, cached_cost_usd=saved)


def user_profiles_estimate(
    est: Estimator,
    fold: Fold,
    items: pl.DataFrame,
    cfg: ProfilesConfig,
    n_users: int | None = None,
    stage: str | None = None,
) -> StageEstimate:
    """The requests `user_profiles(fold, items, cfg, n_users=n_users)` makes with the LLM backend."""
    params = profile_params(cfg)
    movies = rated_movies(fold, items, cfg)
    ordered = sorted(set(fold.train["user_idx"].to_list()) | set(range(n_users or 0)))
    batches = turn_batches(llm_users(ordered, n_users, cfg), movies, cfg.batch_size)
    paid: list[Messages] = []
    cached, saved, measured, stand_ins = 0, 0.0, [], 0
    template_tokens: list[int] = []
    for user, turns in batches.items():
        previous: str | None = None
        exact = True
        for turn in turns:
            if exact:
                prompt = user_prompt(previous, turn)
                hit = est.cached(prompt, params, validate_profile)
                if hit is not None:
                    cached, saved = cached + 1, saved + float(hit.get("cost_usd") or 0.0)
                    measured.append(int(hit["usage"]["completion_tokens"]))
                    previous = hit["text"]
                    continue
                paid.append(prompt)
                exact = False
                continue
            # The previous turn is still to be written: its place is held by the template profile.
            template = template_user_profile(user, movies[user], len(movies[user]))[0]
            if len(template_tokens) < 50:
                template_tokens.append(est.text_tokens(template))
            paid.append(user_prompt(template, turn))
            stand_ins += 1
    completion = _completion(cfg, measured)
    row = est.paid(
        stage or f"user_profiles fold {fold.number}", paid, completion, cached_calls=cached, cached_cost_usd=saved
    )
    if stand_ins and template_tokens:
        # Later turns carry a written profile (~`completion` tokens), not the template that stood in for it.
        extra = round(stand_ins * max(0.0, completion - sum(template_tokens) / len(template_tokens)))
        row.prompt_tokens += extra
        row.cost_usd = est.price(row.prompt_tokens, row.completion_tokens)
    users = len(batches)
    row.note = "; ".join(x for x in (f"{users:,} users, {len(paid) + cached:,} turns", row.note) if x)
    return row
