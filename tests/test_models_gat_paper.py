"""`gat-paper` is the authors' configuration as `SEED-METHOD` describes it, and runs."""

from __future__ import annotations

import dataclasses

import torch

from models.config import PAPER_GAT, ModelsConfig, TrainingConfig
from models.gat import GATPaperRecommender
from models.gat.graph import build_rating_graph
from models.registry import build_model
from tasks.train import settings_for
from tests.synthetic import planted_fold


def test_paper_settings_match_the_authors_code() -> None:
    cfg = ModelsConfig().gat_paper
    assert cfg == PAPER_GAT
    assert (cfg.layer, cfg.attention, cfg.layer_heads, cfg.hidden, cfg.readout) == (
        "conv",
        "gatv2",
        [4, 4, 1],
        64,
        "last",
    )
    assert cfg.edge_ratings and cfg.trainable_features and not cfg.negative_edges
    assert (cfg.learning_rate, cfg.weight_decay, cfg.lr_factor, cfg.lr_patience) == (1e-3, 1e-5, 0.4, 5)
    assert cfg.dropout == cfg.attention_dropout == cfg.feature_dropout == 0.0
    assert (cfg.loss, cfg.bpr_weight, cfg.cosine_weight) == ("bpr", 5.0, 2.0)
    assert TrainingConfig().max_epochs == 300
    model = build_model("gat-paper", ModelsConfig())
    assert isinstance(model, GATPaperRecommender) and model.cfg == PAPER_GAT and model.uses_features
    assert settings_for("gat-paper", ModelsConfig()).gat_paper == PAPER_GAT
    assert "gat-paper" not in ModelsConfig().names  # slow: run on request


def test_paper_network_reads_every_rating_with_its_value() -> None:
    data, _ = planted_fold()
    graph = build_rating_graph(data)
    assert graph.positive.shape[1] == 2 * data.train.height and list(graph.relations()) == ["rated"]
    assert sorted(set(graph.ratings.tolist())) == sorted(set(data.train["rating"].to_list()))
    g = torch.Generator().manual_seed(0)
    features = torch.randn(data.n_users + data.n_items, 12, generator=g)
    fold = dataclasses.replace(data, user_features=features[: data.n_users], item_features=features[data.n_users :])
    training = TrainingConfig(max_epochs=4, eval_every=2, patience=2, device="cpu")
    model = GATPaperRecommender(training=training).fit(fold)
    network = model.network
    widths = [layer.norm.normalized_shape[0] for layer in network.layers]
    assert widths == [256, 256, 64] and network.embedding.requires_grad
    assert model.score(torch.arange(3)).shape == (3, data.n_items)
