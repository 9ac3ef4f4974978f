"""Settings of the reranking stage (paper section 2.3)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from e2ep.settings import Strict

Strategy = Literal["prompt", "bst", "batch", "relevancy"]
STRATEGIES: tuple[Strategy, ...] = ("prompt", "bst", "batch", "relevancy")
JudgeName = Literal["auto", "llm", "semantic"]
Normalisation = Literal["minmax", "rank"]


class RerankConfig(Strict):
    """Which strategies rerank which model's lists, with which judge, and how judge and model scores are fused."""

    strategies: list[Strategy] = list(STRATEGIES)
    """Reranking strategies run, each a method named `<base_model>+<strategy>`: `prompt` (one listwise prompt),
    `bst` (binary insertion with pairwise judgements), `batch` (overlapping windows of `batch_window`, merged by
    sliding-window passes), `relevancy` (0-100 scores in batches, averaged). Empty: no reranking."""

    base_model: str = "gat"
    """The model whose top `pool_size` candidates are reranked (must be among `models.names`). Left at its
    default and not run, reranking is skipped; set explicitly and not run, the configuration is refused."""

    pool_size: Annotated[int, Field(ge=2)] = 20
    """Candidates reranked per user (the base model's top ones); the rest of its list follows unchanged."""

    judge: JudgeName = "auto"
    """`llm`: the LLM gateway (`E2EP_LLM_MODEL`), memoised. `semantic`: an offline, deterministic judge from the
    profile embeddings (cosine of user and item profiles, with the Dislikes sections counting against).
    `auto`: `llm` when a model is configured, else `semantic`."""

    judge_weight: Annotated[float, Field(ge=0.0)] = 0.8
    """Weight of the normalised judge score in the fused score (the paper's 80 %)."""

    base_weight: Annotated[float, Field(ge=0.0)] = 0.2
    """Weight of the normalised base-model score in the fused score (the paper's 20 %)."""

    normalisation: Normalisation = "minmax"
    """How both scores are put on [0, 1] within a user's pool before fusion: `minmax` (x - min) / (max - min), which
    keeps score gaps; `rank` (n - r) / (n - 1) from the rank r alone. Judges that only order (prompt, bst, batch)
    give rank scores either way."""

    dislike_weight: Annotated[float, Field(ge=0.0)] = 0.5
    """Semantic judge: weight of the Dislikes similarity subtracted from the profile similarity."""

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

    @field_validator("strategies")
    @classmethod
    def _unique(cls, v: list[Strategy]) -> list[Strategy]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _weights(self) -> RerankConfig:
        if self.judge_weight + self.base_weight <= 0:
            raise ValueError("rerank.judge_weight + rerank.base_weight must be positive")
        if self.batch_stride >= self.batch_window:
            raise ValueError("rerank.batch_stride must be below rerank.batch_window so windows overlap")
        return self

    def method(self, strategy: str) -> str:
        """The name reranked results carry in every table and artifact."""
        return f"{self.base_model}+{strategy}"
