"""The one typed configuration of an experiment.

The same pydantic models are the `experiment` flow's parameter schema (Prefect renders them as the run form),
the `e2ep` command line's flags, and the TOML config files: what one accepts, all accept.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from data.config import OFFICIAL_ML100K_FOLDS, DatasetConfig, RelevanceConfig, SplitConfig
from e2ep.configbase import Strict as _Strict
from e2ep.errors import ConfigError
from e2ep.llm.config import LLMConfig
from evaluation.config import EvaluationConfig, RunSettings
from models.config import ModelsConfig
from rerank.config import RerankConfig
from rerank.method import Method
from semantic.metadata.config import MetadataConfig
from semantic.profiles.config import EmbeddingConfig, ProfilesConfig, Representation

FeatureSource = Literal["profiles", "template", "llm", "precomputed", "precomputed-items", "none"]


class AblationConfig(_Strict):
    """One variant of the GAT, trained and evaluated beside the others as method `gat/<name>`."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=40)]
    """Label in tables and artifacts (the method is called `gat/<name>`)."""

    features: FeatureSource = "profiles"
    """Node features: `profiles` (the run's own profiles), `template` / `llm` / `precomputed` (embeddings of
    profiles from that backend), `precomputed-items` (the authors' published item profiles, which hold for every
    fold; a user's text is the mean embedding of the items they liked in the fold's training ratings), or `none`
    (learned ID embeddings, as `gat-id`)."""

    representation: Representation | None = None
    """Embed the `unified` Markdown profile or the `integrated` flat prose; None keeps the run's setting."""

    cosine_weight: Annotated[float, Field(ge=0.0)] | None = None
    """Weight of the cosine alignment term; 0 turns it off. None keeps `models.gat.cosine_weight`."""


class ExperimentConfig(_Strict):
    """Everything one run of the `experiment` flow depends on."""

    dataset: DatasetConfig = DatasetConfig()
    split: SplitConfig = SplitConfig()
    relevance: RelevanceConfig = RelevanceConfig()
    models: ModelsConfig = ModelsConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    metadata: MetadataConfig = MetadataConfig()
    llm: LLMConfig = LLMConfig()
    profiles: ProfilesConfig = ProfilesConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    rerank: RerankConfig = RerankConfig()

    ablations: list[AblationConfig] = []
    """GAT variants run beside `models.names`, e.g. `[{name = "no-cosine", cosine_weight = 0}]` (each is
    reported as `gat/<name>`)."""

    semantic: bool = True
    """Build item metadata, item and per-fold user profiles and their embeddings (the LLM-enhanced features)."""

    artifacts_dir: str = "artifacts"
    """Run outputs go to `<artifacts_dir>/<run name>/`."""

    run_name: str | None = None
    """Folder name for this run's outputs; default `<dataset>-<timestamp>`."""

    parallel_folds: Annotated[int, Field(ge=1)] = 5
    """Fold subflows run at once. They mostly wait for the worker pool (`workers`), which bounds the CPU work, so
    running every fold at once keeps all workers busy until the end; the results do not depend on it."""

    workers: Annotated[int, Field(ge=0)] = 0
    """Worker processes that train models and embed profiles (0: one per core). Each runs one job at a time, so
    results are the same for any number of workers."""

    threads_per_worker: Annotated[int, Field(ge=1)] = 1
    """torch threads of each worker (a fit's numbers can depend on its thread count, not on the pool size)."""

    task_runner: Literal["threads", "dask"] = "threads"
    """Where fold subflows run: `threads` of the flow's own process, or `dask` (prefect-dask's DaskTaskRunner)."""

    dask_address: str | None = None
    """`dask` only: scheduler of an existing cluster (`tcp://host:8786`), whose workers need this code and the
    run's Prefect API (`PREFECT_API_URL`). None: a LocalCluster of `parallel_folds` workers for the run."""

    dask_processes: bool = True
    """`dask` with a LocalCluster: workers are processes (True) or threads of the flow's process (False)."""

    @model_validator(mode="after")
    def _models_are_registered(self) -> ExperimentConfig:
        from models.registry import model_names  # the model classes declare their names

        known = model_names()
        if unknown := [n for n in self.models.names if n not in known]:
            raise ValueError(f"unknown model(s) {unknown}; known: {', '.join(known)}")
        return self

    @model_validator(mode="after")
    def _precomputed_users_fit_the_folds(self) -> ExperimentConfig:
        # The authors' user profiles saw one fold's training ratings; on any other fold they leak its test data.
        only = self.profiles.precomputed_user_fold
        uses_precomputed = self.profiles.backend == "precomputed" or any(
            a.features == "precomputed" for a in self.ablations
        )
        if self.semantic and uses_precomputed and self.split.folds != [only]:
            raise ValueError(f"precomputed user profiles are valid for fold {only} only: add --folds {only}")
        return self

    @model_validator(mode="after")
    def _ablations_are_distinct_and_fed(self) -> ExperimentConfig:
        names = [a.name for a in self.ablations]
        if len(set(names)) != len(names):
            raise ValueError(f"ablation names must be unique, got {names}")
        if not self.semantic and any(a.features != "none" for a in self.ablations):
            raise ValueError("ablations with text features need the semantic stage (semantic = true)")
        return self

    def method_ids(self) -> list[Method]:
        """Every method the run reports, in table order: the models, the ablations (`gat/<name>`), then
        the reranked lists (`<base>+<strategy>`) of configured base models (a base chosen on validation is known
        only once trained: its reranked lists follow in the tables)."""
        return [
            *(Method(n) for n in self.models.names),
            *(Method.ablation(a.name) for a in self.ablations),
            *(Method.reranked(b, s) for b in self.rerank.base_models or [] for s in self.rerank.strategies),
        ]

    def methods(self) -> list[str]:
        """`method_ids` as the names stored in tables and artifacts."""
        return [str(m) for m in self.method_ids()]

    @model_validator(mode="after")
    def _rerank_base_is_run(self) -> ExperimentConfig:
        rr = self.rerank
        if not rr.strategies:
            return self
        asked = bool(rr.model_fields_set & {"base_model", "base_models", "strategies"})
        problem = None
        missing = [b for b in rr.base_models or [] if b not in self.models.names]
        if missing:
            problem = (
                f"rerank base model(s) {', '.join(map(repr, missing))} not among models.names "
                f"({', '.join(self.models.names)}): add them, or set rerank.strategies=[]"
            )
        elif not self.semantic:
            problem = (
                "reranking needs the semantic layer (profiles and embeddings): drop --no-semantic, "
                "or set rerank.strategies=[]"
            )
        if problem and asked:
            raise ValueError(problem)
        if problem:
            # Reranking is implied by the defaults, not asked for: skip it when it cannot run.
            object.__setattr__(rr, "strategies", [])
        return self

    @model_validator(mode="after")
    def _reference_is_run(self) -> ExperimentConfig:
        reference = self.evaluation.reference
        if reference != "auto" and reference not in self.methods():
            raise ValueError(
                f"evaluation.reference {reference!r} is not a method of this run; use 'auto' or one "
                f"of: {', '.join(self.methods())}"
            )
        return self

    @model_validator(mode="after")
    def _data_fits_the_settings(self) -> ExperimentConfig:
        low, high = self.dataset.scale()
        threshold = self.relevance.positive_threshold
        if not low < threshold <= high:
            raise ValueError(
                f"relevance.positive_threshold {threshold:g} is outside the rating scale {low:g}-{high:g}"
                " (dataset.rating_scale): no rating could be relevant"
            )
        official = self.split.official and self.dataset.name == "ml-100k"
        if official and self.split.n_folds != OFFICIAL_ML100K_FOLDS:
            raise ValueError(
                f"the official ML-100K split has {OFFICIAL_ML100K_FOLDS} folds (u1-u5): drop "
                f"split.n_folds or add --random-folds"
            )
        return self


def resolve_auto(cfg: ExperimentConfig) -> ExperimentConfig:
    """`cfg` with every `auto` that the environment settles resolved, once, where a run starts (the flow's entry,
    and the command line before it computes the run key): the LLM model (`$E2EP_LLM_MODEL`), the profile backend
    (`llm` when a model is configured, else `template`) and the rerank judge (`llm`, else `semantic`). Downstream
    code reads these resolved values, so they are part of every cache key. `evaluation.reference` stays `auto`:
    it is chosen from the run's validation results (evaluation/reference.py). Idempotent."""
    model = cfg.llm.resolved_model()
    backend = cfg.profiles.backend
    if backend == "auto":
        backend = "llm" if model else "template"
    judge = cfg.rerank.judge
    if judge == "auto":
        judge = "llm" if model else "semantic"
    return cfg.model_copy(
        update={
            "llm": cfg.llm.model_copy(update={"model": model}),
            "profiles": cfg.profiles.model_copy(update={"backend": backend}),
            "rerank": cfg.rerank.model_copy(update={"judge": judge}),
        }
    )


def require_resolved(cfg: ExperimentConfig) -> ExperimentConfig:
    """`cfg`, refused while an `auto` that `resolve_auto` settles is left (a caller skipped it). The model is not
    compared with the environment again: a fold on a Dask worker may see another environment than the flow."""
    if cfg.profiles.backend == "auto" or cfg.rerank.judge == "auto":
        raise ConfigError("internal: the experiment config must pass through flows.config.resolve_auto first")
    return cfg


def semantic_settings(cfg: ExperimentConfig) -> tuple[ProfilesConfig, LLMConfig]:
    """The resolved profile and LLM settings as every semantic stage's cache key sees them (the caps decide only
    whether a call is sent, see e2ep/llm/budget.py)."""
    cfg = require_resolved(cfg)
    return cfg.profiles, cfg.llm.without_caps()


def rerank_settings(cfg: ExperimentConfig) -> tuple[RerankConfig, LLMConfig | None]:
    """The resolved rerank settings, and the LLM settings only when the LLM judges (so a changed model never
    invalidates semantic-judge results)."""
    cfg = require_resolved(cfg)
    return cfg.rerank, (cfg.llm.without_caps() if cfg.rerank.judge == "llm" else None)


def run_settings(cfg: ExperimentConfig, config_json: str | None = None) -> RunSettings:
    """What the evaluation stage is told about the run (from a resolved config); `config_json` (default: `cfg`'s)
    is written as the run folder's config.json, i.e. the configuration as given, before `resolve_auto`."""
    rerank = rerank_settings(cfg)[0] if cfg.rerank.strategies else None
    return RunSettings(
        dataset=cfg.dataset.name,
        rating_scale=cfg.dataset.scale(),
        relevance=cfg.relevance,
        evaluation=cfg.evaluation,
        methods=tuple(cfg.method_ids()),
        config_json=cfg.model_dump_json(indent=2) if config_json is None else config_json,
        rerank=rerank,
    )


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Build the config from an optional TOML file, then dotted-key overrides (`{"split.seed": 3}`)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            data = tomllib.loads(p.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"cannot set {dotted}: {key} is not a section")
        node[leaf] = value
    return ExperimentConfig.model_validate(data)
