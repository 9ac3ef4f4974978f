"""The evaluation stage's settings: cut-offs, protocols, the reference method and the simulated cold-start
protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from data.config import RelevanceConfig
from e2ep.configbase import Strict as _Strict
from rerank.config import RerankConfig
from rerank.method import Method

Protocol = Literal["full", "paper"]


class ColdStartProtocolConfig(_Strict):
    """Simulated new users: per fold, a seeded `share` of the test users (with more than max(n) training ratings)
    keep only their first n training ratings by timestamp; every model (and reranker) is trained again on that
    truncated training set, the other users keeping theirs, and metrics are reported per n for those users only
    (segments `cold-start-n<n>`). The drawn users are split into len(n) groups, one per n, so one extra truncated
    training set per fold serves every n: each n is measured on about share / len(n) of the test users."""

    enabled: bool = True
    """On by default (the paper's Table 1 has a cold-start column): it fits every model a second time per fold,
    once, with the hyperparameters chosen on the full fold (`search`). A fold without eligible users skips it."""

    share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.2
    """Share of the eligible test users truncated."""

    n: list[Annotated[int, Field(ge=1)]] = [1, 3, 5, 10]
    """Training ratings kept, one group of users per value."""

    seed: int = 0
    """Seed of the user draw (combined with the fold number)."""

    search: Literal["reuse", "again"] = "reuse"
    """`reuse`: each model is fitted once on the truncated fold with the hyperparameters it chose on the full
    fold's validation slice (training-side data only, never test; it includes the drawn users' later ratings, a
    small share of the validation users). `again`: every search runs again on the truncated fold's validation."""

    @field_validator("n")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("evaluation.cold_start_protocol.n needs at least one count")
        return sorted(set(v))


class EvaluationConfig(_Strict):
    k: list[int] = [5, 10, 20]
    """Cut-offs for every @k metric."""

    protocols: list[Protocol] = ["full", "paper"]
    """`full`: rank all unseen items. `paper`: the seed authors' protocol (see evaluation/paper_protocol.py)."""

    cold_start_max: Annotated[int, Field(ge=1)] = 10
    """Users with fewer training interactions than this form the cold-start segment."""

    reference: str = "auto"
    """Method every other is compared against in the paired significance tests: `auto` (the baseline with the
    best validation NDCG@10, see evaluation/reference.py) or the name of a method of the run."""

    n_recommendations: Annotated[int, Field(ge=1)] = 50
    """Length of each user's stored recommendation list (at least max(k))."""

    cold_start_protocol: ColdStartProtocolConfig = ColdStartProtocolConfig()
    """Simulated new users (beside the natural cold-start segment): see `ColdStartProtocolConfig`."""

    @field_validator("k")
    @classmethod
    def _positive_k(cls, v: list[int]) -> list[int]:
        if not v or any(k <= 0 for k in v):
            raise ValueError("k must be a non-empty list of positive integers")
        return sorted(set(v))

    @model_validator(mode="after")
    def _long_enough(self) -> EvaluationConfig:
        if self.n_recommendations < max(self.k):
            raise ValueError("n_recommendations must be at least the largest k")
        return self


@dataclass(frozen=True)
class RunSettings:
    """What the evaluation stage is told about the run it summarises: the stage configs and plain values it reads
    (the experiment's own config stays with the flow, a floor above)."""

    dataset: str
    rating_scale: tuple[float, float]
    relevance: RelevanceConfig
    evaluation: EvaluationConfig
    methods: tuple[Method, ...]
    """Every configured method in table order (see `ExperimentConfig.method_ids`)."""
    config_json: str = "{}"
    """Written verbatim as the run folder's `config.json`."""
    rerank: RerankConfig | None = None
    """The reranking settings with every `auto` resolved (they describe the Reranking section); None: none ran."""

    @property
    def method_names(self) -> list[str]:
        """`methods` as stored in tables and artifacts."""
        return [str(m) for m in self.methods]
