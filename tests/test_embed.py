import numpy as np
import polars as pl
import pytest
import torch

from e2ep.errors import DataError
from semantic.embed import embed_frame_counts, embed_texts, load_encoder
from semantic.profiles import EmbeddingConfig, ProfilesConfig, item_profiles
from tests.profiles_fakes import items_frame

SCIFI = """# Starship Odyssey
## Overview
A crew of explorers travels across the galaxy aboard a starship, facing alien worlds.
## Attributes
- Genre: Science Fiction, Adventure
- Tags: space travel, aliens, time travel
## Description
Epic space opera with futuristic technology.
## Dislikes
Romantic comedies"""
ROMANCE = """# Paris in Spring
## Overview
Two strangers fall in love during a spring in Paris.
## Attributes
- Genre: Romance, Comedy
- Tags: love story, wedding, meet-cute
## Description
A gentle romantic comedy about second chances.
## Dislikes
Violence, science fiction"""


@pytest.fixture
def cfg(tmp_path) -> EmbeddingConfig:
    return EmbeddingConfig(cache_dir=str(tmp_path / "emb"), device="cpu")


def test_shape_norm_and_semantics(cfg):
    vectors = embed_texts(["space adventure sci-fi", SCIFI, ROMANCE], cfg)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query, scifi, romance = vectors
    assert query @ scifi > query @ romance + 0.1


def test_second_call_is_served_from_the_cache(cfg, monkeypatch):
    model = load_encoder(cfg)
    calls: list[int] = []
    original = model.encode

    def counting(texts, *args, **kwargs):
        calls.append(len(texts))
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(model, "encode", counting)
    texts = ["a heist thriller", "a quiet family drama", "a heist thriller"]
    first = embed_texts(texts, cfg)
    assert calls == [2]  # duplicates encoded once
    second = embed_texts(list(reversed(texts)), cfg)
    assert calls == [2]  # nothing encoded again
    np.testing.assert_array_equal(second, first[::-1])
    embed_texts(["a heist thriller", "new text"], cfg)
    assert calls == [2, 1]
    prefixed = EmbeddingConfig(**{**cfg.model_dump(), "prefix": "clustering: "})
    embed_texts(["a heist thriller"], prefixed)  # a different encoded text, so a different key
    assert calls == [2, 1, 1]


def test_bfloat16_encoding_is_close_to_float32_and_cached_apart(cfg):
    texts = ["space adventure sci-fi", SCIFI, ROMANCE]
    full = embed_texts(texts, cfg)
    half_cfg = cfg.model_copy(update={"precision": "bfloat16"})
    half = embed_texts(texts, half_cfg)  # not the float32 vectors from the cache: the key names the precision
    assert not np.array_equal(half, full)
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-5)
    assert (half * full).sum(1).min() > 0.999
    uncached = embed_texts(texts, half_cfg.model_copy(update={"cache": False}))
    np.testing.assert_array_equal(uncached, half)  # the same vectors on every encoding


def test_embed_frame_aligns_rows_with_ids(cfg):
    profiles = item_profiles(items_frame(4), ProfilesConfig()).frame
    frame = profiles.filter(pl.col("item_idx") != 2).with_columns(
        pl.when(pl.col("item_idx") == 3).then(pl.lit("")).otherwise(pl.col("text")).alias("text")
    )
    tensor, counts = embed_frame_counts(frame, "item_idx", 6, cfg)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (6, 384)
    assert counts == {"embedded": 2, "missing": 4, "encoded": 2}
    assert embed_frame_counts(frame, "item_idx", 6, cfg)[1]["encoded"] == 0  # both texts now come from the cache
    assert torch.all(tensor[2:] == 0)
    expected = embed_texts(profiles["text"].to_list()[:2], cfg)
    np.testing.assert_allclose(tensor[:2].numpy(), expected, atol=1e-6)
    with pytest.raises(DataError):
        embed_frame_counts(frame, "item_idx", 1, cfg)


def test_long_texts_are_pooled_over_windows_not_truncated(cfg):
    model = load_encoder(cfg)
    limit = model.max_seq_length
    long = " ".join([SCIFI] * 6 + [ROMANCE] * 6)  # well over the model's limit
    ids = model.tokenizer(long, add_special_tokens=False)["input_ids"]
    assert len(ids) > 2 * limit
    vector = embed_texts([long], cfg)[0]
    truncated = embed_texts([model.tokenizer.decode(ids[: limit - 2])], cfg)[0]
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    # the romance second half counts: the pooled vector is closer to ROMANCE than the truncated (sci-fi) one
    romance = embed_texts([ROMANCE], cfg)[0]
    assert float(vector @ romance) > float(truncated @ romance) + 0.05
    windows = [model.tokenizer.decode(ids[s : s + limit - 2]) for s in range(0, len(ids), limit - 2)]
    parts = embed_texts(windows, cfg)
    weights = np.array([min(limit - 2, len(ids) - s) for s in range(0, len(ids), limit - 2)]) / (limit - 2)
    pooled = (parts * weights[:, None]).sum(0)
    assert np.allclose(vector, pooled / np.linalg.norm(pooled), atol=1e-4)
