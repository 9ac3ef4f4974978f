"""Every recommender a run may ask for, derived from the classes: a model's name, config section and search space
are declared on its class (`models.base.Recommender`), so adding a model is adding its class to `MODELS`."""

from __future__ import annotations

from e2ep.errors import ConfigError
from models.als import ALSRecommender
from models.base import Recommender
from models.bpr_mf import BPRMF
from models.config import ModelsConfig
from models.ease import EASERecommender
from models.gat import GATIDRecommender, GATPaperRecommender, GATRecommender
from models.itemknn import ItemKNNRecommender
from models.lightgcn import LightGCNRecommender
from models.ngcf import NGCFRecommender
from models.popularity import Popularity
from models.rp3beta import RP3betaRecommender

MODELS: tuple[type[Recommender], ...] = (
    Popularity,
    EASERecommender,
    ItemKNNRecommender,
    RP3betaRecommender,
    BPRMF,
    LightGCNRecommender,
    NGCFRecommender,
    ALSRecommender,
    GATRecommender,
    GATIDRecommender,
    GATPaperRecommender,
)
REGISTRY: dict[str, type[Recommender]] = {cls.name: cls for cls in MODELS}


def model_names() -> tuple[str, ...]:
    """Every name `models.names` accepts, in registry order."""
    return tuple(REGISTRY)


def model_class(name: str) -> type[Recommender]:
    """The recommender class called `name`; raises `ConfigError` (listing known names) otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}") from None


def build_model(name: str, cfg: ModelsConfig | None = None) -> Recommender:
    """A fresh, unfitted recommender called `name`, configured from `cfg` (defaults when None)."""
    return model_class(name).from_config(cfg if cfg is not None else ModelsConfig())


def model_module(name: str) -> str:
    """The module defining the recommender called `name`: the code its training runs (for cache keys)."""
    return model_class(name).__module__
