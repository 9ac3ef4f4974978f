"""Build a recommender from its name and the models config (names as in `e2ep.config.KNOWN_MODELS`)."""

from __future__ import annotations

from collections.abc import Callable

from e2ep.config import KNOWN_MODELS, ModelsConfig
from e2ep.errors import ConfigError
from models.als import ALSRecommender
from models.base import Recommender
from models.bpr_mf import BPRMF
from models.ease import EASERecommender
from models.gat import GATIDRecommender, GATPaperRecommender, GATRecommender
from models.itemknn import ItemKNNRecommender
from models.lightgcn import LightGCNRecommender
from models.ngcf import NGCFRecommender
from models.popularity import Popularity
from models.rp3beta import RP3betaRecommender

_BUILDERS: dict[str, Callable[[ModelsConfig], Recommender]] = {
    Popularity.name: lambda cfg: Popularity(),
    EASERecommender.name: lambda cfg: EASERecommender(cfg.ease, cfg.training),
    ItemKNNRecommender.name: lambda cfg: ItemKNNRecommender(cfg.itemknn, cfg.training),
    RP3betaRecommender.name: lambda cfg: RP3betaRecommender(cfg.rp3beta, cfg.training),
    BPRMF.name: lambda cfg: BPRMF(cfg.bpr_mf, cfg.training),
    LightGCNRecommender.name: lambda cfg: LightGCNRecommender(cfg.lightgcn, cfg.training),
    NGCFRecommender.name: lambda cfg: NGCFRecommender(cfg.ngcf, cfg.training),
    ALSRecommender.name: lambda cfg: ALSRecommender(cfg.als, cfg.training),
    GATRecommender.name: lambda cfg: GATRecommender(cfg.gat, cfg.training),
    GATIDRecommender.name: lambda cfg: GATIDRecommender(cfg.gat, cfg.training),
    GATPaperRecommender.name: lambda cfg: GATPaperRecommender(cfg.gat_paper, cfg.training),
}

assert tuple(_BUILDERS) == KNOWN_MODELS, "registry and e2ep.config.KNOWN_MODELS disagree"


def build_model(name: str, cfg: ModelsConfig | None = None) -> Recommender:
    """A fresh, unfitted recommender called `name`; raises `ConfigError` (listing known names) otherwise."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(KNOWN_MODELS)}") from None
    return builder(cfg if cfg is not None else ModelsConfig())


def model_module(name: str) -> str:
    """The module defining the recommender called `name`: the code its training runs (for cache keys)."""
    return type(build_model(name)).__module__
