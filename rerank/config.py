"""Settings of the reranking stage (paper section 2.3)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from e2ep.configbase import Strict

Strategy = Literal["prompt", "bst", "batch", "relevancy"]
STRATEGIES: tuple[Strategy, ...] = ("prompt", "bst", "batch", "relevancy")
JudgeName = Literal["auto", "llm", "semantic"]
Normalisation = Literal["minmax", "rank"]
Fusion = Literal["validation", "paper"]
SemanticSignal = Literal["liked-items", "profile"]


class RerankConfig(Strict):
    """Which strategies rerank which model's lists, with which judge, and how judge and model scores are fused."""

    strategies: list[Strategy] = list(STRATEGIES)
    """Reranking strategies run, each a method named `<base>+<strategy>`: `prompt` (one listwise prompt),
    `bst` (binary insertion with pairwise judgements), `batch` (overlapping windows of `batch_window`, merged by
    sliding-window passes), `relevancy` (0-100 scores in batches, averaged). Empty: no reranking."""

    base_models: list[str] | None = None
    """The models whose top `pool_size` candidates are reranked, each by every strategy (`<base>+<strategy>`); each
    must be among `models.names`. None: per fold, the trained model (of `models.names`) with the best NDCG@10 on
    that fold's own validation slice (ties: the earlier in `models.names`)."""

    base_model: str | None = None
    """Shorthand for `base_models = [base_model]` (kept for older configurations)."""

    pool_size: Annotated[int, Field(ge=2)] = 20
    """Candidates reranked per user (the base model's top ones); the rest of its list follows unchanged."""

    judge: JudgeName = "auto"
    """`llm`: the LLM gateway (`E2EP_LLM_MODEL`), memoised. `semantic`: an offline, deterministic judge from the
    profile embeddings, not an LLM (see `semantic_signal`).
    `auto`: `llm` when a model is configured, else `semantic`."""

    fusion: Fusion = "validation"
    """`validation`: per fold, base model and strategy, the judge weight (from `fusion_grid`) and the normalisation
    (from `fusion_normalisations`) with the best NDCG@10 on validation users' validation items (pools from the base
    model's ranking with only the fit part of training excluded, scored by the same judge); ties go to the smaller
    judge weight, so a judge that does not help on validation leaves the base ranking alone. `paper`: the fixed
    `judge_weight` / `base_weight` and `normalisation` (80:20, min-max: the paper's setting)."""

    fusion_grid: list[Annotated[float, Field(ge=0.0, le=1.0)]] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """`validation` fusion: judge weights tried (the base weight is 1 - w); 0 (base only) and 0.8 (the paper's)
    are always among them."""

    fusion_normalisations: list[Normalisation] = ["minmax", "rank"]
    """`validation` fusion: normalisations tried with every weight."""

    fusion_alpha: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05
    """`validation` fusion: the best grid point replaces the base order (w = 0) only when its per-user validation
    NDCG@10 gain is significant (one-sided Wilcoxon signed-rank over the sampled users, p < alpha), so noise on a
    few hundred validation users cannot hand the ranking to the judge; 1 keeps the best point whatever its p."""

    validation_users: Annotated[int, Field(ge=1)] | None = 200
    """`validation` fusion: users (a seeded sample of those with a relevant validation item) whose validation pools
    the judge scores to choose the fusion; their judge requests and LLM calls are counted separately
    (`validation_*` columns of the cost) and memoised like every other call. None: all of them."""

    judge_weight: Annotated[float, Field(ge=0.0)] = 0.8
    """`paper` fusion: weight of the normalised judge score in the fused score (the paper's 80 %)."""

    base_weight: Annotated[float, Field(ge=0.0)] = 0.2
    """`paper` fusion: weight of the normalised base-model score in the fused score (the paper's 20 %)."""

    normalisation: Normalisation = "minmax"
    """`paper` fusion: how both scores are put on [0, 1] within a user's pool before fusion: `minmax`
    (x - min) / (max - min), which keeps score gaps; `rank` (n - r) / (n - 1) from the rank r alone. Judges that
    only order (prompt, bst, batch) give rank scores either way."""

    semantic_signal: SemanticSignal = "liked-items"
    """Semantic judge (offline, not an LLM): `liked-items` scores a candidate by the mean cosine of its profile
    embedding with those of the user's `liked_neighbours` most similar liked training movies; `profile` by the
    cosine with the user's profile embedding (minus the Dislikes term). `liked-items` is the default because its
    validation scores can be trusted: while the fusion is chosen it knows only the fit part's likes, whereas user
    profiles are written from the validation ratings too (`profiles.include_validation`), which flatters `profile`
    on validation (ML-100K, `als`'s pools: 0.230 vs 0.219 chosen-fusion NDCG@10, yet −0.030 on test)."""

    liked_neighbours: Annotated[int, Field(ge=1)] = 10
    """Semantic judge, `liked-items`: how many of the user's most similar liked movies are averaged."""

    dislike_weight: Annotated[float, Field(ge=0.0)] = 0.5
    """Semantic judge, `profile`: weight of the Dislikes similarity subtracted from the profile similarity."""

    bst_both_orders: bool = False
    """BST: ask every comparison in both orders (two requests) to cancel position bias; when the two answers
    disagree the base model's order decides."""

    batch_window: Annotated[int, Field(ge=2)] = 5
    """Batch: candidates the judge orders at once."""

    batch_stride: Annotated[int, Field(ge=1)] = 2
    """Batch: step between consecutive windows (overlap = window - stride; each pass settles `window - stride`
    top positions)."""

    relevancy_batch: Annotated[int, Field(ge=1)] = 5
    """Relevancy: candidates scored per request."""

    relevancy_appearances: Annotated[int, Field(ge=1)] = 3
    """Relevancy: batches each candidate is scored in (its scores are averaged)."""

    recent_interactions: Annotated[int, Field(ge=0)] = 10
    """Prompts show the user's this many most recent liked training movies."""

    explanations: bool = True
    """Write a short rationale per reranked recommendation (LLM: in the ranking's conversation; else a template
    from the overlapping profile attributes)."""

    max_users: Annotated[int, Field(ge=1)] | None = None
    """Rerank only a seeded sample of this many users (`seed`; the same sample in every fold and strategy, see
    e2ep/sampling.py) for cheap trials. Reranked methods are then evaluated on exactly those users, beside the
    base model on the same users (`<base_model>@sample`). None: every user."""

    seed: int = 0
    """Seed of the relevancy batches' shuffles and of the `max_users` sample."""

    @field_validator("strategies", "fusion_normalisations")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @field_validator("fusion_grid")
    @classmethod
    def _grid(cls, v: list[float]) -> list[float]:
        return sorted({0.0, 0.8, *v})

    @field_validator("base_models")
    @classmethod
    def _bases(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("rerank.base_models must name at least one model (None: the best on validation)")
        return None if v is None else list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _weights(self) -> RerankConfig:
        if self.judge_weight + self.base_weight <= 0:
            raise ValueError("rerank.judge_weight + rerank.base_weight must be positive")
        if self.batch_stride >= self.batch_window:
            raise ValueError("rerank.batch_stride must be below rerank.batch_window so windows overlap")
        if self.base_model is not None:
            if self.base_models is not None and self.base_models != [self.base_model]:
                raise ValueError("set rerank.base_models or rerank.base_model, not both")
            object.__setattr__(self, "base_models", [self.base_model])
        return self
