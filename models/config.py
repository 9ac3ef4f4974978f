"""The models stage's settings: what every trained model shares (`TrainingConfig`), each model's own
section with its hyperparameter axes (searched per fold on validation, models/tuning.py), and the
`models` section composing them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BeforeValidator, Field, field_validator, model_validator

from e2ep.configbase import Strict as _Strict

# A hyperparameter axis searched on validation: a non-empty list of values.
CountGrid = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
RateGrid = Annotated[list[Annotated[float, Field(gt=0.0)]], Field(min_length=1)]
PenaltyGrid = Annotated[list[Annotated[float, Field(ge=0.0)]], Field(min_length=1)]


class FloatRange(_Strict):
    """A continuous search axis: values in `[low, high]`, sampled on a log scale when `log` (Optuna's TPE)."""

    low: Annotated[float, Field(ge=0.0)]
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.high < self.low:
            raise ValueError(f"range high ({self.high}) is below low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


class IntRange(_Strict):
    """An integer search axis: counts in `[low, high]`, sampled on a log scale when `log` (Optuna's TPE)."""

    low: Annotated[int, Field(ge=1)]
    high: int
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.high < self.low:
            raise ValueError(f"range high ({self.high}) is below low ({self.low})")
        return self


def _scalar_as_choice(value: Any) -> Any:
    """A single number is the one-value axis `[number]` (a fixed hyperparameter)."""
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value


# A hyperparameter axis searched per fold on validation: a list of choices (a grid), a range, or one value.
CountAxis = Annotated[CountGrid | IntRange, BeforeValidator(_scalar_as_choice)]
RateAxis = Annotated[RateGrid | FloatRange, BeforeValidator(_scalar_as_choice)]
PenaltyAxis = Annotated[PenaltyGrid | FloatRange, BeforeValidator(_scalar_as_choice)]
TrialBudget = Annotated[int, Field(ge=1)]
"""Configurations fitted per fold at most. A grid with no more points than this is searched exhaustively
(Optuna's GridSampler); anything else gets this many trials of Optuna's seeded TPE sampler."""


class TuningConfig(_Strict):
    """How every tunable model searches its space on each fold's validation slice (models/tuning.py)."""

    storage: str | None = None
    """Optuna storage URL (e.g. `sqlite:///tuning.db`) shared by every worker; trials already stored for the same
    model, fold data and space count against the budget and are not refitted. None: in memory, per fit."""

    pruning: bool = True
    """Stop an iterative model's trial early when its validation NDCG@10 falls below the median of earlier trials
    at the same evaluation (Optuna's MedianPruner; never before `pruning_warmup` evaluations or 2 finished
    trials). A grid search (the GAT's `selection_grid`) races each later point against the best finished fit with
    the same rule and one finished fit, so its first listed value is always fitted in full."""

    pruning_warmup: Annotated[int, Field(ge=0)] = 3
    """Validation evaluations a trial always gets before it may be pruned."""


class TrainingConfig(_Strict):
    """Settings shared by every trained recommender."""

    max_epochs: Annotated[int, Field(ge=1)] = 300
    """Upper bound on training epochs."""

    patience: Annotated[int, Field(ge=1)] = 5
    """Early stopping: evaluations without validation NDCG@10 improvement before stopping."""

    eval_every: Annotated[int, Field(ge=1)] = 5
    """Epochs between validation evaluations."""

    batch_size: Annotated[int, Field(ge=1)] = 4096
    """BPR triples per optimisation step (4096: on ML-100K as good as 2048 for BPR-MF and LightGCN, and LightGCN,
    which propagates the whole graph once per step, runs twice as fast per epoch)."""

    embedding_dim: Annotated[int, Field(ge=1)] = 64
    """Size of learned user and item vectors."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` uses CUDA when present."""

    seed: int = 0
    """Seed for initialisation, negative sampling and the hyperparameter search's sampler of one fit (each run of
    `seeds` sets it)."""

    tuning: TuningConfig = TuningConfig()

    seeds: Annotated[list[int], Field(min_length=1)] | None = None
    """Run every trained model once per seed (reported as mean ± std over folds × seeds; the user-level tests
    average each user over them). None: the single `seed`. A paper-grade run uses 3 or more (configs/seeds.toml)."""

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v

    def run_seeds(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else [self.seed]

    def for_seed(self, seed: int) -> TrainingConfig:
        """The settings of one fit under `seed` (`seeds` cleared, so a fit's cache key does not depend on which
        other seeds the run has)."""
        return self.model_copy(update={"seed": seed, "seeds": None})


class LightGCNConfig(_Strict):
    num_layers: CountAxis = [2, 3]
    """Propagation depths searched per fold on validation NDCG@10 (each fit takes ~20 s per fold on 2 CPU
    cores)."""

    learning_rate: RateAxis = [1e-2]
    """Adam learning rates searched (1e-3 needs >250 epochs; 5e-3 is no better on validation and twice as slow)."""

    weight_decay: PenaltyAxis = [1e-3]
    """L2 penalty on the layer-0 embeddings of each batch (PyG's `lambda_reg`) searched."""

    n_trials: TrialBudget = 2


class BPRMFConfig(_Strict):
    learning_rate: RateAxis = [5e-3]
    """Adam learning rates searched per fold on validation NDCG@10."""

    weight_decay: PenaltyAxis = [3e-3, 1e-2, 3e-2]
    """L2 penalty on the embeddings of each batch, scaled like PyG's `BPRLoss`, searched."""

    n_trials: TrialBudget = 3


class NGCFConfig(_Strict):
    num_layers: CountAxis = [3]
    """Propagation depths searched per fold on validation NDCG@10. One depth by default, for time: with [2, 3]
    validation chose 3 on four of the five ML-100K folds, and each depth is a ~35 s fit per fold on one core."""

    learning_rate: RateAxis = [3e-3]
    """Adam learning rates searched (3e-3 beat 1e-2 on validation at every weight decay tried)."""

    weight_decay: PenaltyAxis = [1e-3]
    """L2 penalty on the layer-0 embeddings of each batch (scaled like BPR-MF's) searched."""

    n_trials: TrialBudget = 2

    message_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    """Dropout on each layer's output embeddings while training (NGCF's message dropout; 0 was no better)."""

    node_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """Share of the normalised adjacency's entries dropped (and the rest rescaled) at every training step (0.1 was
    no better on validation)."""


class ALSConfig(_Strict):
    factors: CountAxis = [64]
    """Latent factor counts searched per fold on validation NDCG@10 (16-128 factors all reach about the same
    validation NDCG@10 once regularisation is strong enough)."""

    regularization: PenaltyAxis = [20.0, 50.0]
    """L2 penalties on the factors searched (implicit's `regularization`, not scaled by counts; 0.01-1 overfit,
    100 collapses to popularity)."""

    alpha: PenaltyAxis = [2.0, 10.0]
    """Confidence weights searched: a positive pair has confidence c = 1 + alpha (Hu et al.), every other pair 1."""

    n_trials: TrialBudget = 4

    iterations: Annotated[int, Field(ge=1)] = 30
    """Upper bound on ALS sweeps; the sweep with the best validation NDCG@10 is kept."""

    patience: Annotated[int, Field(ge=1)] = 3
    """Sweeps without validation improvement before a trial stops."""

    num_threads: Annotated[int, Field(ge=0)] = 0
    """Threads for implicit's solver (0: all cores). BLAS runs single-threaded during fits, as implicit advises."""


class EASEConfig(_Strict):
    """EASE (Steck, WWW 2019): a closed-form item-item model; only its L2 penalty is searched."""

    l2: PenaltyAxis = FloatRange(low=20.0, high=5000.0, log=True)
    """L2 penalty lambda on the item-item weights, searched per fold on validation NDCG@10."""

    n_trials: TrialBudget = 12

    clip_negative_weights: bool = False
    """Zero the negative item-item weights after the fit (Cornac's `posB`); Steck's EASE keeps them."""


Similarity = Literal["cosine", "bm25"]
Attention = Literal["gatv2", "gat", "static", "none"]
"""GAT attention kinds (`GATConfig.attention`); the `conv` layer (`models.gat.layers`) runs anything but `gatv2` as
`gat`."""


class ItemKNNConfig(_Strict):
    """Item-item nearest neighbours over the positive training ratings (implicit's Cosine/BM25 recommenders)."""

    similarity: Annotated[list[Similarity], Field(min_length=1)] = ["cosine", "bm25"]
    """Item similarities searched: cosine of the item columns, or cosine after BM25 weighting."""

    neighbours: CountAxis = IntRange(low=10, high=500, log=True)
    """Neighbours kept per item, searched."""

    bm25_k1: PenaltyAxis = FloatRange(low=0.1, high=3.0)
    """BM25's K1 (term saturation), searched when the similarity is `bm25`."""

    bm25_b: PenaltyAxis = FloatRange(low=0.0, high=1.0)
    """BM25's B (length normalisation by the item's popularity), searched when the similarity is `bm25`."""

    n_trials: TrialBudget = 16


class RP3betaConfig(_Strict):
    """RP3beta (Paudel et al., 2016): three-step random-walk item similarity, popularity-penalised."""

    alpha: PenaltyAxis = FloatRange(low=0.1, high=1.5)
    """Exponent on the transition probabilities, searched per fold on validation NDCG@10."""

    beta: PenaltyAxis = FloatRange(low=0.0, high=1.0)
    """Exponent of the popularity penalty on the walk's destination item, searched."""

    neighbours: CountAxis = IntRange(low=20, high=500, log=True)
    """Neighbours kept per item, searched."""

    n_trials: TrialBudget = 16


class GATConfig(_Strict):
    """The graph attention recommender (`gat`; `gat-id` with learned ID embeddings only; `gat-paper` with
    `PAPER_GAT`, the authors' settings).

    Shares `training` (max_epochs, patience, eval_every, device, seed) with the other models; everything else is
    here. Defaults were chosen on ML-100K u1 *validation* NDCG@10 (`models.training.validation_ndcg`, one thread,
    ID embeddings only, likes only unless said; each field gives its figures). The reference points on the same
    slice: LightGCN 0.226 (its grid), and this network with uniform attention (`attention = "none"`, i.e.
    LightGCN's propagation) 0.2196 with BPR and 0.2179 with the exact softmax.
    """

    layer: Literal["normalised", "conv"] = "normalised"
    """`normalised`: degree-normalised attention without weight matrices or LayerNorm (`models.gat.attention`,
    plain torch); `conv`: the library `GATv2Conv` with residual, LeakyReLU and LayerNorm (the authors' form,
    `models.gat.layers`, on `backend`)."""

    backend: Literal["dgl", "pyg"] = "dgl"
    """Graph library running the `conv` layer: DGL (`dgl.nn.GATv2Conv`) or torch_geometric (`GATv2Conv`). The
    `normalised` layer is plain torch whatever this says."""

    attention: Attention = "static"
    """`gatv2`: dynamic attention (Brody et al., 2022; what the paper's authors used); `gat`: the original GAT;
    `static` (`normalised` layer only): GAT's logits without their LeakyReLU, computed with two sparse products
    instead of per-edge gathers (`models.gat.attention.NormalisedAttention.static`); `none`: uniform attention,
    i.e. LightGCN's propagation (a control). `static` is the default for speed: per-edge `gatv2` costs ~0.5 s per
    forward and backward pass of the ML-100K graph on one core, `static` ~0.02 s. On u1 validation, unbounded
    `static` attention lowered NDCG@10 below uniform attention (BPR 0.1859 vs 0.2196; softmax 0.2033 vs 0.2179):
    see `attention_bound`."""

    attention_bound: Annotated[float, Field(ge=0.0)] = 0.5
    """`static`: attention logits squashed to `bound * tanh(logit / bound)`, so no neighbour's weight moves more than
    a factor exp(2 bound) from uniform; 0: unbounded. 0.5: u1 validation NDCG@10 0.2126 (unbounded 0.2033, uniform
    attention 0.2179): bounded attention overfits less, and still does not beat uniform weights here. With the final
    defaults (`gat-id`), u1 / u2 validation: 0.2141 / 0.2047 at 0.5, 0.2195 / 0.2070 with uniform attention
    (`attention = "none"`)."""

    num_layers: Annotated[int, Field(ge=1)] = 3
    """Message-passing layers (the paper: 3)."""

    hidden: Annotated[int, Field(ge=1)] = 64
    """Width of every layer and of the final user/item vectors (the paper: 64)."""

    heads: Annotated[int, Field(ge=1)] = 4
    """Attention heads per layer; each head has `hidden / heads` units and the heads are concatenated."""

    layer_heads: list[Annotated[int, Field(ge=1)]] | None = None
    """`conv` only: heads per layer, each `hidden` wide, concatenated (the authors' [4, 4, 1]: 256 → 256 → 64);
    overrides `num_layers` and `heads`, and the first layer reads the text features directly."""

    readout: Literal["last", "mean"] = "mean"
    """User/item vectors: the last layer's output (`last`, the paper's) or the mean of the input and every layer's
    output (`mean`, LightGCN's layer combination)."""

    negative_edges: bool = False
    """Also propagate over explicit dislikes (ratings at or below `relevance.negative_threshold`) as a second
    relation with its own attention weights (`normalised`: added with a learned per-layer weight starting at 0);
    False: liked edges only. Measured after the test run with the other defaults (`gat-id`), u1 / u2 validation:
    0.2185 / 0.2049 with dislikes, 0.2141 / 0.2047 without; left off, pending the other folds."""

    edge_ratings: bool = False
    """The authors' graph: every training rating is an edge with the rating as edge feature (one relation; `conv`
    with backend `pyg` only, since DGL's `GATv2Conv` takes no edge features)."""

    id_embeddings: bool = True
    """`gat`, `normalised` layer: learned ID embeddings plus the projected text (True), or the text alone. With the
    defaults, ID embeddings plus frozen template-profile text against ID embeddings alone (`gat-id`), validation
    NDCG@10 per fold u1-u5: 0.2215 / 0.2186 / 0.1920 / 0.1959 / 0.2084 vs 0.2141 / 0.2047 / 0.1842 / 0.1934 / 0.2008."""

    user_text: Literal["profiles", "liked_items"] = "profiles"
    """`gat`: a user's text features are the embedding of their profile (`profiles`), or the mean embedding of the
    items they liked in the fold's training ratings (`liked_items`, needs no user profile)."""

    init_scale: Annotated[float, Field(gt=0.0)] = 0.01
    """`normalised`: standard deviation of the initial ID embeddings and text-projection weights (0.01 with
    `embedding_reg` 1e-3 and lr 1e-2, LightGCN's regime: BPR 0.1859; 0.1 without penalty: 0.1827)."""

    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """Dropout on each layer's messages."""

    attention_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """Dropout on attention coefficients."""

    feature_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """Dropout on the input text features (or, for `conv`, the ID embeddings) before the projection."""

    trainable_features: bool = False
    """Fine-tune the text embeddings as parameters (initialised from the profiles, as the authors did); False keeps
    them fixed and learns only their projection (beside the ID embeddings there is no need to move the text; not
    compared on validation with the new layer)."""

    loss: Literal["softmax", "bpr"] = "softmax"
    """`softmax`: sampled softmax of each positive against `negatives` uniform items shared by the batch; `bpr`:
    BPR with one uniform negative per positive (the authors')."""

    negatives: Annotated[int, Field(ge=1)] = 4096
    """`softmax`: uniform negative items per batch; at least the catalogue size (ML-100K 1,682, ML-1M 3,706 items):
    the exact softmax over all items. Exact softmax with temperature 0.2: u1 validation NDCG@10 0.2033 vs BPR 0.1859
    (static attention), best after 15-20 epochs instead of 45-110; 256 sampled negatives: 0.1879 (temperature 0.5),
    0.1948 (0.2)."""

    temperature: Annotated[float, Field(gt=0.0)] = 0.2
    """`softmax`: logits are scores / temperature (256 sampled negatives: 0.2: 0.1948, 0.5: 0.1879, 1: 0.1804)."""

    cosine_scores: bool = False
    """Score by the cosine of the user and item vectors (in the softmax loss and when ranking) instead of their dot
    product."""

    learning_rate: Annotated[float, Field(gt=0.0)] = 1e-2
    """AdamW learning rate (LightGCN's)."""

    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    """AdamW (decoupled) weight decay."""

    embedding_reg: Annotated[float, Field(ge=0.0)] = 0.1
    """`normalised`: L2 penalty on the batch's ID embeddings per positive (LightGCN's `lambda_reg`); the text
    projection is not penalised, so a strong penalty makes `gat` lean on the profile text and `gat-id` on fewer
    effective dimensions. Searched per fold (`selection_grid`). Exploration on u1 validation NDCG@10 (`gat`, template
    profiles): 0.01: 0.2217, 0.03: 0.2259, 0.1: 0.2399, 0.3: 0.2415, 1: 0.2420 (ALS on the same slice: 0.2372);
    `gat-id`: 0.01: 0.2141, 0.1: 0.2283, 0.3: 0.1970. A stronger penalty needs more epochs (best near epoch 85-130
    instead of 20)."""

    patience: Annotated[int, Field(ge=1)] | None = 3
    """Early stopping of this network: evaluations without validation improvement before it stops (None:
    `training.patience`). 3 instead of the shared 5 saves ~10 epochs per fit; on ML-100K it stopped at the same
    best epoch with the same validation NDCG@10 as 5 (gat folds 1, 3, 5; gat-id fold 3; at `embedding_reg` 0.01)."""

    lr_factor: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    """ReduceLROnPlateau on validation NDCG@10: multiply the learning rate by this after `lr_patience` evaluations
    without improvement."""

    lr_patience: Annotated[int, Field(ge=0)] = 100
    """Evaluations without validation improvement before the learning rate is reduced. 100 (never, given early
    stopping: a constant rate, as LightGCN's); static-attention BPR gave 0.1859 at epoch 45 with 2 and with 100
    (the plateau never came before early stopping), uniform attention 0.2196 at epoch 110 with 100."""

    batch_size: Annotated[int, Field(ge=1)] = 4096
    """Positive pairs per optimisation step; the graph is propagated full-batch at every step (a size of at least
    the number of positives is full-batch training). Larger batches saved no time: against 4096 at 1e-2, 5-fold
    mean validation NDCG@10 with 8192 / 16384 at 1e-2 or 3e-2 was +0.002 to +0.004 for `gat` at 1.1-1.5 x the
    time (2-3 x the epochs) and -0.001 to -0.003 for `gat-id`."""

    bpr_weight: Annotated[float, Field(ge=0.0)] = 1.0
    """Weight of the ranking term of the loss (BPR or sampled softmax; the authors': 5 with BPR)."""

    cosine_weight: Annotated[float, Field(ge=0.0)] = 0.0
    """Weight of the alignment term `1 - mean cos(user, positive item)`; 0 turns it off (the authors': 2)."""

    selection_grid: dict[str, list[float]] = {"embedding_reg": [0.1, 0.3]}
    """Per-fold model selection: numeric fields of this section and the values to try; every combination is fitted
    and the best on the fold's validation NDCG@10 is kept (`gat` and `gat-id` each choose their own). Empty: one fit
    with the settings above. The two penalties bracket both models' best values seen on u1/u2 validation (see
    `embedding_reg`), so each fold picks its own from its own validation slice."""

    hard_negative_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """`bpr`: share of negatives replaced by one of the user's explicit dislikes (when the user has any); the rest
    are uniform among items the user did not rate positively. Off by default: 0.3 gave validation NDCG@10 0.123
    vs 0.171 (dislikes are items the user chose to watch, so ranking them last fights the positives' signal)."""

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> GATConfig:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.bpr_weight == 0 and self.cosine_weight == 0:
            raise ValueError("bpr_weight and cosine_weight cannot both be 0")
        if self.edge_ratings and (self.layer != "conv" or self.backend != "pyg"):
            raise ValueError("edge_ratings (rating edge features) needs layer 'conv' with backend 'pyg'")
        if self.layer_heads is not None and self.layer != "conv":
            raise ValueError("layer_heads applies to layer 'conv' only")
        numeric = {
            name
            for name, f in GATConfig.model_fields.items()
            if cast(Any, f.annotation) in (int, float)
            or str(f.annotation).startswith("typing.Annotated[float")
            or str(f.annotation).startswith("typing.Annotated[int")
        }
        if unknown := set(self.selection_grid) - numeric:
            raise ValueError(f"selection_grid: {sorted(unknown)} are not numeric GAT settings")
        return self


PAPER_GAT = GATConfig(
    layer="conv",
    backend="pyg",
    attention="gatv2",
    layer_heads=[4, 4, 1],
    hidden=64,
    readout="last",
    edge_ratings=True,
    negative_edges=False,
    id_embeddings=False,
    user_text="profiles",
    dropout=0.0,
    attention_dropout=0.0,
    feature_dropout=0.0,
    trainable_features=True,
    loss="bpr",
    learning_rate=1e-3,
    weight_decay=1e-5,
    lr_factor=0.4,
    lr_patience=5,
    batch_size=10**9,
    bpr_weight=5.0,
    cosine_weight=2.0,
    patience=None,
    selection_grid={},
)
"""`gat-paper`: the authors' configuration (`SEED-METHOD`): 3 GATv2 layers with heads [4, 4, 1] of 64 units
concatenated, every rating an edge with the rating as edge feature, trainable text features, AdamW lr 1e-3 and
weight decay 1e-5, no dropout, full batch, 5 · BPR + 2 · cosine, ReduceLROnPlateau (0.4, patience 5). Early stopping
is on validation NDCG@10 like every model here (theirs watched the training loss; `training.max_epochs` 300 as
theirs)."""


class ModelsConfig(_Strict):
    names: list[str] = [
        "popularity",
        "ease",
        "itemknn",
        "rp3beta",
        "bpr-mf",
        "lightgcn",
        "ngcf",
        "als",
        "gat-id",
        "gat",
    ]
    """Recommenders to run, in table order (any of `models.registry.model_names()`, checked by the experiment
    config): the baselines, the GAT without LLM (`gat-id`) and the GAT on profile embeddings (`gat`, the base of the
    rerankers)."""

    training: TrainingConfig = TrainingConfig()
    ease: EASEConfig = EASEConfig()
    itemknn: ItemKNNConfig = ItemKNNConfig()
    rp3beta: RP3betaConfig = RP3betaConfig()
    bpr_mf: BPRMFConfig = BPRMFConfig()
    lightgcn: LightGCNConfig = LightGCNConfig()
    ngcf: NGCFConfig = NGCFConfig()
    als: ALSConfig = ALSConfig()
    gat: GATConfig = GATConfig()
    gat_paper: GATConfig = PAPER_GAT

    @field_validator("names")
    @classmethod
    def _some(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one model is needed")
        return v
