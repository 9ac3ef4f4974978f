"""Template explanations (no LLM): the profile attributes a recommendation shares with the viewer.

    "Fits your taste for Drama, Romance; shares tags: love, war; with Tom Hanks, as in Apollo 13; close to
     Casablanca, which you rated 5/5."

Genres and tags come from the profiles' Attributes, people from "Directed by …" / "Starring …" in item
Descriptions (the template profiles write them; LLM profiles may not), the closest liked movie from the profile
embeddings, and a genre the viewer's Dislikes mention (and Attributes do not) is flagged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from rerank.inputs import RerankInputs, attribute_list, profile_people, profile_sections


def _shared(left: Sequence[str], right: Sequence[str]) -> list[str]:
    wanted = {r.lower() for r in right}
    return list(dict.fromkeys(x for x in left if x.lower() in wanted))


def template_explanation(user: int, item: int, inputs: RerankInputs) -> str:
    """One sentence from overlapping attributes; deterministic."""
    user_profile = inputs.user_profiles.get(user, "")
    item_profile = inputs.item_profiles.get(item, "")
    item_genres = attribute_list(item_profile, "genre")
    liked_genres = attribute_list(user_profile, "genre")
    parts = []
    genres = _shared(item_genres, liked_genres)
    if genres:
        parts.append(f"fits your taste for {', '.join(genres[:3])}")
    tags = _shared(attribute_list(item_profile, "tag"), attribute_list(user_profile, "tag"))
    if tags:
        parts.append(f"shares tags you like: {', '.join(tags[:3])}")
    liked = [i for i, _ in inputs.liked.get(user, []) if i != item]
    known = inputs.liked_people(user)
    other = next((known[p.lower()] for p in profile_people(item_profile) if known.get(p.lower(), item) != item), None)
    if other is not None:
        common = _shared(profile_people(item_profile), profile_people(inputs.item_profiles.get(other, "")))
        parts.append(f"with {', '.join(common[:2])}, as in {inputs.title(other)}")
    if liked:
        vectors = inputs.item_vectors[liked] @ inputs.item_vectors[item]
        best = int(np.argmax(vectors))
        if vectors[best] > 0:
            rating = dict(inputs.liked[user]).get(liked[best], 0.0)
            parts.append(f"close to {inputs.title(liked[best])}, which you rated {rating:g}/5")
    dislikes = profile_sections(user_profile).get("Dislikes", "").lower()
    avoided = [g for g in item_genres if g not in liked_genres and re.search(rf"\b{re.escape(g.lower())}\b", dislikes)]
    text = "; ".join(parts) if parts else "ranked high by viewers with ratings like yours"
    text = text[0].upper() + text[1:]
    if avoided:
        text += f" (though it is {', '.join(avoided[:2])}, which you often rate low)"
    return text + "."
