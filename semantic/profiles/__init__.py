"""LLM-written (or template, or the authors' precomputed) profiles of items and users in one Markdown schema."""

from semantic.profiles.common import ChatGateway, ProfileResult
from semantic.profiles.config import EmbeddingConfig, ProfilesConfig
from semantic.profiles.items import item_profiles, normalise_items, template_item_profile
from semantic.profiles.schema import SECTIONS, integrated, parse_profile, render_profile, validate_profile
from semantic.profiles.users import select_rated, template_user_profile, user_profiles

__all__ = [
    "SECTIONS",
    "ChatGateway",
    "EmbeddingConfig",
    "ProfileResult",
    "ProfilesConfig",
    "integrated",
    "item_profiles",
    "normalise_items",
    "parse_profile",
    "render_profile",
    "select_rated",
    "template_item_profile",
    "template_user_profile",
    "user_profiles",
    "validate_profile",
]
