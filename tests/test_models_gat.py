"""The GAT recommender (`gat`, `gat-id`) on tiny data with planted taste groups, on both graph backends.

`tests.synthetic.planted_ratings`: even users like the first half of the catalog and dislike the second, odd
users the reverse. A model that learned the groups fills a user's top 5 with unseen items of the user's own half;
popularity cannot (both halves are about equally popular).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch

from e2ep.errors import ConfigError, DataError
from models.base import FoldData, Recommender
from models.config import GATConfig, ModelsConfig, TrainingConfig, TuningConfig
from models.gat import GATIDRecommender, GATRecommender
from models.gat.graph import build_signed_graph
from models.gat.layers import SignedGATLayer
from models.gat.loss import HardNegatives, bpr_cosine_loss, full_softmax_loss
from models.popularity import Popularity
from models.registry import build_model
from models.training import validation_ndcg
from tasks.train import settings_for
from tests.synthetic import planted_ratings

N_USERS, N_ITEMS = 60, 40
FAST = TrainingConfig(max_epochs=30, eval_every=5, patience=2, device="cpu")
SMALL = GATConfig(
    hidden=16,
    heads=2,
    num_layers=2,
    learning_rate=0.01,
    batch_size=256,
    dropout=0.0,
    feature_dropout=0.0,
    selection_grid={},
)


def _features(n: int, group: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """8-d features: a group direction plus as much noise (informative, far from a one-hot label)."""
    direction = torch.tensor([[1.0] * 4 + [0.0] * 4, [0.0] * 4 + [1.0] * 4])
    return direction[group] + torch.randn(n, 8, generator=generator)


@pytest.fixture(scope="module")
def planted() -> FoldData:
    ratings = planted_ratings(N_USERS, N_ITEMS, per_user=14, seed=0).with_columns(
        (pl.col("user_id") - 1).alias("user_idx"),
        (pl.col("item_id") - 1).alias("item_idx"),
        pl.col("rating").cast(pl.Float64),
    )
    # each user's last two liked ratings are the validation slice
    ranked = ratings.with_columns(
        pl.col("timestamp").rank("ordinal", descending=True).over("user_idx", pl.col("rating") >= 4).alias("recent")
    )
    is_val = (pl.col("rating") >= 4) & (pl.col("recent") <= 2)
    columns = ["user_idx", "item_idx", "rating"]
    g = torch.Generator().manual_seed(0)
    user_group = torch.arange(1, N_USERS + 1) % 2  # even user ids (group 0) like the first half
    item_group = (torch.arange(N_ITEMS) >= N_ITEMS // 2).long()
    return FoldData(
        n_users=N_USERS,
        n_items=N_ITEMS,
        train=ranked.filter(~is_val).select(columns),
        validation=ranked.filter(is_val).select(columns),
        user_features=_features(N_USERS, user_group, g),
        item_features=_features(N_ITEMS, item_group, g),
    )


def own_half_share(model: Recommender, data: FoldData, k: int = 5) -> float:
    """Share of every user's top-k unseen items that lie in the half of the catalog the user's group likes."""
    users = torch.arange(data.n_users)
    top, _ = model.recommend(users, k, exclude=data.train_pairs)
    liked_first_half = ((users + 1) % 2 == 0).unsqueeze(1)
    in_first_half = top < data.n_items // 2
    return float((in_first_half == liked_first_half).float().mean())


@pytest.fixture(scope="module", params=["normalised", "dgl", "pyg"])
def fitted(request: pytest.FixtureRequest, planted: FoldData) -> GATRecommender:
    """The default `normalised` layer (sampled softmax), and the library `conv` layer on each backend (BPR)."""
    if request.param == "normalised":
        cfg = SMALL.model_copy(update={"cosine_weight": 0.5})
    else:
        cfg = SMALL.model_copy(
            update={
                "layer": "conv",
                "backend": request.param,
                "cosine_weight": 0.5,
                "loss": "bpr",
                "hard_negative_share": 0.3,
            }
        )
    return GATRecommender(cfg, FAST).fit(planted)


def test_both_backends_learn_the_planted_groups(fitted: GATRecommender, planted: FoldData) -> None:
    popularity = own_half_share(Popularity().fit(planted), planted)
    assert popularity < 0.7
    assert own_half_share(fitted, planted) > 0.9
    log = fitted.training_log
    assert 0 < log.best_epoch <= log.epochs_run <= FAST.max_epochs and log.best_validation_ndcg10 > 0.3
    assert log.hyperparameters["layer"] == fitted.cfg.layer and log.hyperparameters["backend"] == fitted.cfg.backend
    assert log.hyperparameters["features"] == ("profiles+ids" if fitted.cfg.layer == "normalised" else "profiles")


def test_scores_are_dot_products_of_the_final_vectors(fitted: GATRecommender, planted: FoldData) -> None:
    users = torch.arange(planted.n_users)
    emb = fitted._embedding
    assert emb is not None and torch.allclose(fitted.score(users[:3]), emb[:3] @ emb[planted.n_users :].T)


def test_gat_id_needs_no_features(planted: FoldData) -> None:
    bare = dataclasses.replace(planted, user_features=None, item_features=None)
    training = FAST.model_copy(update={"max_epochs": 2, "eval_every": 1})
    model = build_model("gat-id", ModelsConfig(gat=SMALL.model_copy(update={"backend": "pyg"}), training=training))
    assert isinstance(model, GATIDRecommender)
    assert model.fit(bare).training_log.hyperparameters["features"] == "ids"


def test_gat_without_features_is_a_config_error(planted: FoldData) -> None:
    bare = dataclasses.replace(planted, user_features=None)
    with pytest.raises(ConfigError, match="GAT needs user and item profile embeddings.*semantic stage"):
        GATRecommender(SMALL, FAST).fit(bare)
    wrong = dataclasses.replace(planted, item_features=planted.item_features[:-1])
    with pytest.raises(DataError, match="do not fit the fold"):
        GATRecommender(SMALL, FAST).fit(wrong)


def test_negative_edges_are_a_second_bidirectional_relation(planted: FoldData) -> None:
    signed = build_signed_graph(planted, negative_edges=True)
    n_users = planted.n_users
    as_set = lambda e: set(zip(*e.tolist(), strict=True))  # noqa: E731
    pos, neg = planted.positive_pairs, planted.negative_pairs
    assert as_set(signed.positive) == as_set(torch.stack([pos[0], pos[1] + n_users])) | as_set(
        torch.stack([pos[1] + n_users, pos[0]])
    )
    assert as_set(signed.negative) == as_set(torch.stack([neg[0], neg[1] + n_users])) | as_set(
        torch.stack([neg[1] + n_users, neg[0]])
    )
    neutral = planted.train.filter((pl.col("rating") > 2) & (pl.col("rating") < 4))
    assert neutral.height > 0 and not as_set(
        torch.tensor([neutral["user_idx"].to_list(), (neutral["item_idx"] + n_users).to_list()])
    ) & (as_set(signed.positive) | as_set(signed.negative))
    unsigned = build_signed_graph(planted, negative_edges=False)
    assert list(unsigned.relations()) == ["positive"] and torch.equal(unsigned.positive, signed.positive)
    # the dislikes reach the layer's output through their own convolution
    torch.manual_seed(0)
    layer = SignedGATLayer("pyg", 8, 2, ["positive", "negative"]).eval()
    h = torch.randn(signed.n_nodes, 8)
    with_neg = layer(h, signed.to_backend("pyg", torch.device("cpu")))
    without = layer(
        h, {**signed.to_backend("pyg", torch.device("cpu")), "negative": torch.empty(2, 0, dtype=torch.long)}
    )
    changed = (with_neg - without).abs().sum(1) > 1e-6
    assert torch.equal(changed, torch.isin(torch.arange(signed.n_nodes), signed.negative[1]))


def test_cosine_weight_adds_the_alignment_term() -> None:
    g = torch.Generator().manual_seed(0)
    u, i, j = (torch.randn(32, 8, generator=g) for _ in range(3))
    plain = bpr_cosine_loss(u, i, j, bpr_weight=5.0, cosine_weight=0.0)
    bpr = -torch.nn.functional.logsigmoid((u * i).sum(1) - (u * j).sum(1)).mean()
    cos = torch.nn.functional.cosine_similarity(u, i).mean()
    assert torch.isclose(plain.total, 5 * bpr)
    assert torch.isclose(bpr_cosine_loss(u, i, j, 5.0, 2.0).total, 5 * bpr + 2 * (1 - cos))
    # the alignment term pulls u towards i: its gradient on u is the negative cosine gradient
    u.requires_grad_(True)
    bpr_cosine_loss(u, i, j, bpr_weight=0.0, cosine_weight=1.0).total.backward()
    step = u - 0.1 * u.grad
    assert torch.nn.functional.cosine_similarity(step, i).mean() > cos


@pytest.mark.parametrize("cosine", [False, True])
def test_full_softmax_per_distinct_user_equals_the_per_pair_softmax(cosine: bool) -> None:
    g = torch.Generator().manual_seed(0)
    table = torch.randn(5, 8, generator=g)
    users = torch.tensor([3, 0, 3, 3, 1, 0, 4])
    items = torch.randn(11, 8, generator=g, requires_grad=True)
    positive = torch.randint(11, (len(users),), generator=g)
    grads = []
    for grouped in (None, users):
        u = table.clone().requires_grad_(True)
        loss = full_softmax_loss(u[users], items, positive, 0.2, cosine, users=grouped)
        expected = torch.nn.functional.cross_entropy(
            (
                torch.nn.functional.normalize(u[users], dim=-1) @ torch.nn.functional.normalize(items, dim=-1).T
                if cosine
                else u[users] @ items.T
            )
            / 0.2,
            positive,
        )
        assert torch.isclose(loss, expected, atol=1e-5)
        grads.append(torch.autograd.grad(loss, [u, items]))
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_hard_negatives_swap_in_the_users_dislikes() -> None:
    negatives = torch.tensor([[0, 0, 2], [7, 8, 9]])  # user 0 dislikes 7 and 8, user 2 dislikes 9; user 1 none
    hard = HardNegatives(negatives, n_users=3)
    users = torch.tensor([0, 1, 2] * 50)
    uniform = torch.full_like(users, 3)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(hard.mix(users, uniform, 0.0, g), uniform)
    all_hard = hard.mix(users, uniform, 1.0, g)
    assert set(all_hard[users == 0].tolist()) == {7, 8}
    assert set(all_hard[users == 1].tolist()) == {3} and set(all_hard[users == 2].tolist()) == {9}
    half = hard.mix(users, uniform, 0.5, g)
    assert 0.3 < float((half[users != 1] != 3).float().mean()) < 0.7


def test_same_seed_same_recommendations(planted: FoldData) -> None:
    cfg = FAST.model_copy(update={"max_epochs": 4, "eval_every": 2, "seed": 3})
    users = torch.arange(planted.n_users)

    def run(training: TrainingConfig) -> torch.Tensor:
        model = GATRecommender(SMALL.model_copy(update={"dropout": 0.2, "hard_negative_share": 0.5}), training)
        return model.fit(planted).score(users)

    first = run(cfg)
    assert torch.equal(first, run(cfg))
    assert not torch.allclose(first, run(cfg.model_copy(update={"seed": 4})))


def test_registry_and_settings_share_the_gat_section() -> None:
    cfg = ModelsConfig(gat=GATConfig(backend="pyg", cosine_weight=0.0))
    for name, cls in (("gat", GATRecommender), ("gat-id", GATIDRecommender)):
        model = build_model(name, cfg)
        assert type(model) is cls and model.name == name and model.cfg == cfg.gat
        assert settings_for(name, cfg).gat == cfg.gat
    assert settings_for("lightgcn", cfg).gat == GATConfig()  # GAT settings never retrain LightGCN
    assert {"gat", "gat-id"} <= set(ModelsConfig().names)
    with pytest.raises(ValueError, match="multiple of heads"):
        GATConfig(hidden=64, heads=3)


def test_mean_readout_averages_the_input_and_every_layer(planted: FoldData) -> None:
    from models.gat.network import GATNetwork

    signed = build_signed_graph(planted)
    graphs = signed.to_backend("torch", torch.device("cpu"))
    features = torch.cat([planted.user_features, planted.item_features])
    torch.manual_seed(0)
    net = GATNetwork(signed.n_nodes, SMALL.model_copy(update={"readout": "mean"}), list(graphs), features).eval()
    with torch.no_grad():
        net.negative_gate.fill_(0.5)
    h0 = net.ids + net.projection(net.features)

    def layer(i, h):
        return net.layers[i]["positive"](h, graphs["positive"]) + 0.5 * net.layers[i]["negative"](h, graphs["negative"])

    h1 = layer(0, h0)
    h2 = layer(1, h1)
    assert torch.allclose(net(graphs), (h0 + h1 + h2) / 3, atol=1e-6)
    net.readout = "last"
    assert torch.allclose(net(graphs), h2, atol=1e-6)


@pytest.mark.parametrize("attention", ["gatv2", "gat", "static"])
def test_untrained_attention_is_lightgcn_propagation(planted: FoldData, attention: str) -> None:
    """Attention starts uniform, so a layer starts as LightGCN's D^-1/2 A D^-1/2; nodes without neighbours get 0."""
    from models.gat.attention import NormalisedAttention

    signed = build_signed_graph(planted)
    edges = signed.to_backend("torch", torch.device("cpu"))["negative"]
    h = torch.randn(signed.n_nodes, 8)
    out = NormalisedAttention(8, 2, attention)(h, edges)
    degree = torch.bincount(edges.dst, minlength=signed.n_nodes).float()
    norm = (degree[edges.src] * degree[edges.dst]).rsqrt()
    expected = torch.zeros_like(h).index_add_(0, edges.dst, h[edges.src] * norm.unsqueeze(1))
    assert torch.allclose(out, expected, atol=1e-5) and (degree == 0).any()
    # trained attention moves away from it, and the per-edge and factorised forms of `static` agree
    static = NormalisedAttention(8, 2, "static")
    with torch.no_grad():
        static.score.weight.normal_()
    logits = static.score(h)[edges.src]
    from models.gat.attention import edge_softmax

    weights = edge_softmax(logits, edges.dst, signed.n_nodes) * edges.scale.unsqueeze(1)
    per_edge = (
        torch.zeros(signed.n_nodes, 2, 4)
        .index_add_(0, edges.dst, h.view(-1, 2, 4)[edges.src] * weights.unsqueeze(-1))
        .view(-1, 8)
    )
    assert torch.allclose(static(h, edges), per_edge, atol=1e-5) and not torch.allclose(per_edge, expected)


def popularity_fold(seed: int = 0, n_users: int = 80, n_items: int = 40) -> FoldData:
    """Unequal halves: 3/4 of the users like the first half of the catalog, 1/4 the second; within a half, item k
    is liked with a probability falling from 0.9 to 0.05, so popularity inside the user's half decides the rank."""
    rng = np.random.default_rng(seed)
    half = n_items // 2
    train, validation = [], []
    for u in range(n_users):
        own = np.arange(0, half) if u < n_users * 3 // 4 else np.arange(half, n_items)
        other = np.setdiff1d(np.arange(n_items), own)
        likes = np.concatenate([own[rng.random(half) < np.linspace(0.9, 0.05, half)], other[rng.random(half) < 0.05]])
        rng.shuffle(likes)
        n_val = max(1, len(likes) // 5)
        validation += [(u, int(i), 5.0) for i in likes[:n_val]]
        train += [(u, int(i), 5.0) for i in likes[n_val:]]
    frame = lambda rows: pl.DataFrame(  # noqa: E731
        rows,
        schema={
            "user_idx": pl.Int64,
            "item_idx": pl.Int64,
            "rating": pl.Float64,
        },
        orient="row",
    )
    return FoldData(n_users=n_users, n_items=n_items, train=frame(train), validation=frame(validation))


def test_vector_norms_carry_popularity() -> None:
    """On the planted popularity data `gat-id` beats popularity alone, and the same vectors scored by cosine (a
    norm-free model, as LayerNorm'd vectors are) lose much of it: the norm carries the degree signal."""
    data = popularity_fold()
    training = TrainingConfig(max_epochs=60, eval_every=5, patience=3, device="cpu")
    cfg = GATConfig(
        hidden=16, heads=2, num_layers=2, attention="static", negative_edges=False, learning_rate=0.01, batch_size=256
    )
    model = GATIDRecommender(cfg, training).fit(data)
    fitted = validation_ndcg(model, data)
    assert fitted > validation_ndcg(Popularity().fit(data), data) + 0.1
    model._embedding = torch.nn.functional.normalize(model._embedding, dim=1)
    assert validation_ndcg(model, data) < fitted - 0.04


def test_selection_grid_keeps_the_best_fit_on_validation(planted: FoldData) -> None:
    cfg = SMALL.model_copy(update={"selection_grid": {"attention_bound": [0.1, 1.0], "num_layers": [1, 2]}})
    model = GATRecommender(cfg, FAST).fit(planted)
    log = model.training_log
    assert len(log.trials) == 4 and model.cfg == cfg  # the configured grid is kept, the chosen point logged
    best = max((t for t in log.trials if t["state"] == "complete"), key=lambda t: t["best_validation_ndcg10"])
    assert log.best_validation_ndcg10 == best["best_validation_ndcg10"]
    assert log.selected == {"attention_bound": best["attention_bound"], "num_layers": best["num_layers"]}
    assert isinstance(log.selected["num_layers"], int)
    assert abs(validation_ndcg(model, planted) - log.best_validation_ndcg10) < 1e-6
    with pytest.raises(ValueError, match="not numeric"):
        GATConfig(selection_grid={"attention": [1.0]})


def test_a_grid_point_trailing_the_first_is_abandoned_without_changing_the_choice(planted: FoldData) -> None:
    # a learning rate too small to learn anything trails the first point's validation curve from the start
    cfg = SMALL.model_copy(update={"selection_grid": {"learning_rate": [0.01, 1e-7]}, "patience": None})
    pruning = FAST.model_copy(update={"max_epochs": 60, "patience": 8})
    raced = GATIDRecommender(cfg, pruning).fit(planted)
    full = GATIDRecommender(cfg, pruning.model_copy(update={"tuning": TuningConfig(pruning=False)})).fit(planted)
    first, second = raced.training_log.trials
    assert first["state"] == "complete" and second["state"] == "pruned"
    warmup = pruning.tuning.pruning_warmup
    # abandoned at the first evaluation after the warm-up
    assert second["evaluations"] == len(second["curve"]) == warmup + 1
    assert [t["state"] for t in full.training_log.trials] == ["complete", "complete"]
    assert len(full.training_log.trials[1]["curve"]) > warmup + 1
    assert raced.training_log.selected == full.training_log.selected == {"learning_rate": 0.01}
    assert raced.training_log.search["pruned"] == 1 and full.training_log.search["pruned"] == 0
    assert torch.equal(raced.recommend(torch.arange(N_USERS), 5)[0], full.recommend(torch.arange(N_USERS), 5)[0])
