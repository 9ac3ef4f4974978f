"""What the experiment flow's stages hand each other: typed, frozen records of file references (picklable, so a
fold subflow can run on a Dask worker)."""

from __future__ import annotations

from pydantic import BaseModel

from e2ep.llm import LLMConfig
from rerank.selection import BaseChoice
from semantic.profiles import ProfilesConfig
from tasks.evaluate import EvaluatedRef
from tasks.rerank import RerankedRef
from tasks.semantic import MAIN_VARIANT, StageRef
from tasks.train import TrainedRef


class ItemSide(BaseModel, frozen=True):
    """One profile variant's item profiles and their embeddings."""

    profiles: ProfilesConfig
    item_profiles: StageRef
    item_embeddings: StageRef


class SemanticResult(BaseModel, frozen=True):
    """Item metadata plus, per profile variant (`main` first, then those ablations need), the item side."""

    metadata: StageRef
    llm: LLMConfig
    variants: dict[str, ItemSide]

    @property
    def item_profiles(self) -> StageRef:
        return self.variants[MAIN_VARIANT].item_profiles

    @property
    def item_embeddings(self) -> StageRef:
        return self.variants[MAIN_VARIANT].item_embeddings


class FoldResult(BaseModel, frozen=True):
    """One fold's fits, reranked lists and evaluations (the cold-start protocol's beside them)."""

    fold: int
    trained: list[TrainedRef]
    evaluated: list[EvaluatedRef]
    user_profiles: StageRef | None = None
    user_embeddings: StageRef | None = None
    reranked: list[RerankedRef] = []
    base_choice: BaseChoice | None = None
    """The rerank base chosen on this fold's validation slice (None: configured, or no reranking)."""
    cold_start_trained: list[TrainedRef] = []
    cold_start_reranked: list[RerankedRef] = []
    cold_start_user_embeddings: StageRef | None = None


class ColdStartResult(BaseModel, frozen=True):
    """What the cold-start protocol adds to a fold (nothing when it is skipped)."""

    trained: list[TrainedRef] = []
    evaluated: list[EvaluatedRef] = []
    reranked: list[RerankedRef] = []
    user_embeddings: StageRef | None = None
