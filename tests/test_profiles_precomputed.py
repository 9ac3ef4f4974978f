import os
from pathlib import Path

import polars as pl
import pytest

from e2ep.errors import ConfigError
from semantic.profiles import ProfilesConfig, item_profiles, parse_profile, user_profiles
from tests.profiles_fakes import fold


def _seed_dir() -> Path | None:
    base = os.environ.get("E2EP_DATA_DIR") or str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    folder = Path(base) / "seed_repo" / "ml-100k"
    ok = (folder / "movies_structured_100K.csv").is_file() and (folder / "users_structured_100k.csv").is_file()
    return folder if ok else None


SEED = _seed_dir()
needs_files = pytest.mark.skipif(SEED is None, reason="authors' precomputed profiles not available")
N_ITEMS, N_USERS = 1682, 943  # ML-100K; ids are 1-based, indices their sorted order


def _cfg(**kw) -> ProfilesConfig:
    assert SEED is not None
    return ProfilesConfig(
        backend="precomputed",
        precomputed_items_path=str(SEED / "movies_structured_100K.csv"),
        precomputed_users_path=str(SEED / "users_structured_100k.csv"),
        **kw,
    )


def _items() -> pl.DataFrame:
    return pl.DataFrame(
        {"item_idx": range(N_ITEMS), "item_id": range(1, N_ITEMS + 1), "title": [f"M{i}" for i in range(N_ITEMS)]},
        schema_overrides={"item_idx": pl.Int32},
    )


@needs_files
def test_precomputed_items_map_by_movielens_id():
    result = item_profiles(_items(), _cfg())
    assert result.frame.height == N_ITEMS
    assert result.counts["precomputed"] == 1591 and result.counts["template_fallback"] == N_ITEMS - 1591
    assert result.counts["precomputed_found"] == 1591
    toy = parse_profile(result.frame["profile"][0])  # movie_id 1
    assert toy["Name"] == "Toy Story" and "Woody" in toy["Overview"]
    # Without an item_id column or id_map the ids cannot be matched.
    with pytest.raises(ConfigError, match="item_id"):
        item_profiles(_items().drop("item_id"), _cfg())
    again = item_profiles(_items().drop("item_id"), _cfg(), id_map=_items().select("item_idx", "item_id"))
    assert again.frame.equals(result.frame)


@needs_files
def test_precomputed_users_for_fold_one():
    users = pl.DataFrame(
        {"user_idx": range(N_USERS), "user_id": range(1, N_USERS + 1)}, schema_overrides={"user_idx": pl.Int32}
    )
    train = [(u, u % 20, 5.0, 1) for u in range(N_USERS)]
    result = user_profiles(fold(train), _items(), _cfg(representation="integrated"), id_map=users)
    assert result.frame.height == N_USERS
    assert result.counts["precomputed"] == 942 and result.counts["template_fallback"] == 1
    assert "## Overview" in result.frame["profile"][0] and "## " not in result.frame["text"][0]
    with pytest.raises(ConfigError, match="leak"):
        user_profiles(fold(train, number=2), _items(), _cfg(), id_map=users)
    assert user_profiles(fold(train, number=2), _items(), _cfg(precomputed_user_fold=2), id_map=users).frame.height
