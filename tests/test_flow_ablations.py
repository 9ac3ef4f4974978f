"""GAT ablations inside the experiment flow: each variant is trained on the features it names and reported as
`gat/<name>` beside the models; profile embeddings reach only the models that read them."""

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from e2ep.store import FileRef
from flows.config import AblationConfig, load_config, resolve_auto
from models.base import fold_data
from models.config import ModelsConfig
from tasks.semantic import MAIN_VARIANT, profile_variants, variant_of
from tasks.train import NodeFeatures, ablation_job, model_job, with_features
from tests.synthetic import planted_ratings, write_planted_csv


def _features(tmp_path: Path, n_items: int, n_users: int, dim: int = 8) -> NodeFeatures:
    refs = []
    for name, rows in (("items", n_items), ("users", n_users)):
        path = tmp_path / f"{name}.npy"
        np.save(path, np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32))
        refs.append(FileRef(path=str(path), digest=name))
    return NodeFeatures(items=refs[0], users=refs[1])


def test_features_reach_only_models_that_read_them(tmp_path):
    features = _features(tmp_path, 40, 60)
    models = ModelsConfig(names=["lightgcn", "gat", "gat-id"])
    jobs = {name: model_job(name, models, features) for name in models.names}
    assert jobs["gat"].features == features
    assert jobs["lightgcn"].features is None and jobs["gat-id"].features is None
    # Changing the profiles changes no cache key of a model that ignores them.
    other = _features(tmp_path / "..", 40, 60)
    assert model_job("lightgcn", models, other) == jobs["lightgcn"]

    ratings = (
        planted_ratings()
        .rename({"user_id": "user_idx", "item_id": "item_idx"})
        .with_columns(pl.col("user_idx") - 1, pl.col("item_idx") - 1, is_validation=pl.lit(False))
    )
    data = with_features(fold_data(ratings, 60, 40), features)
    assert data.item_features.shape == (40, 8) and data.user_features.shape == (60, 8)
    with pytest.raises(Exception, match="expected 50 rows"):
        with_features(fold_data(ratings, 50, 40), features)


def test_ablation_jobs_override_only_what_they_name(tmp_path):
    features = _features(tmp_path, 40, 60)
    models = ModelsConfig(names=["gat"])
    no_cosine = ablation_job(AblationConfig(name="no-cosine", cosine_weight=0.0), models, features)
    assert (no_cosine.label, no_cosine.model) == ("gat/no-cosine", "gat")
    assert no_cosine.settings.gat.cosine_weight == 0.0
    assert no_cosine.settings.gat.model_copy(update={"cosine_weight": models.gat.cosine_weight}) == models.gat
    no_text = ablation_job(AblationConfig(name="no-text", features="none"), models, features)
    assert (no_text.model, no_text.features) == ("gat-id", None)


def test_authors_item_profiles_serve_every_fold_with_users_from_their_liked_items(tmp_path):
    features = _features(tmp_path, 40, 60)
    models = ModelsConfig(names=["gat"])
    job = ablation_job(AblationConfig(name="llm-items", features="precomputed-items"), models, features)
    assert job.model == "gat" and job.settings.gat.user_text == "liked_items"
    assert job.features.items == features.items and job.features.users is None
    # the authors' user profiles are refused beyond fold 1; their item profiles are not
    cfg = load_config(None, {"ablations": [{"name": "llm-items", "features": "precomputed-items"}]})
    assert cfg.split.folds is None and variant_of(cfg.ablations[0], cfg.profiles) == "precomputed-unified"
    with pytest.raises(Exception, match="valid for fold 1 only"):
        load_config(None, {"ablations": [{"name": "llm", "features": "precomputed"}]})


def test_liked_item_user_text_reads_only_the_folds_training_likes():
    import torch

    from models.gat.recommender import GATRecommender, liked_item_mean

    ratings = (
        planted_ratings()
        .rename({"user_id": "user_idx", "item_id": "item_idx"})
        .with_columns(pl.col("user_idx") - 1, pl.col("item_idx") - 1, is_validation=pl.col("timestamp") % 5 == 0)
    )
    data = fold_data(ratings, 60, 40)
    items = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    users = liked_item_mean(data.positive_pairs, items, 60)
    train = data.train.filter(pl.col("rating") >= 4)
    for u in (0, 7, 31):
        liked = train.filter(pl.col("user_idx") == u)["item_idx"].to_list()
        assert torch.allclose(users[u], items[liked].mean(0), atol=1e-6)
    # validation (and, a fortiori, test) ratings never reach it: a fold without them gives the same text
    held = data.validation.filter(pl.col("rating") >= 4)
    assert held.height > 0
    no_validation = fold_data(ratings.filter(~pl.col("is_validation")), 60, 40)
    assert torch.equal(liked_item_mean(no_validation.positive_pairs, items, 60), users)
    model = GATRecommender(models_gat_liked())
    import dataclasses

    features = model.node_features(dataclasses.replace(data, item_features=items))
    assert torch.equal(features[:60], users) and torch.equal(features[60:], items)


def models_gat_liked():
    return ModelsConfig().gat.model_copy(update={"user_text": "liked_items"})


def test_profile_variants_follow_the_ablations():
    cfg = load_config(
        None,
        {
            "ablations": [
                {"name": "integrated", "representation": "integrated"},
                {"name": "template", "features": "template"},
                {"name": "no-text", "features": "none"},
            ]
        },
    )
    variants, _ = profile_variants(resolve_auto(cfg))
    main = variants[MAIN_VARIANT]
    assert main.backend == "template"  # no LLM configured: the run's own profiles are template ones
    assert set(variants) == {MAIN_VARIANT, "template-integrated"}
    assert variants["template-integrated"].representation == "integrated"
    assert [variant_of(a, main) for a in cfg.ablations] == ["template-integrated", MAIN_VARIANT, None]


def test_ablation_config_errors_are_clear():
    with pytest.raises(ValueError, match="ablation names must be unique"):
        load_config(None, {"ablations": [{"name": "a"}, {"name": "a", "cosine_weight": 0}]})
    with pytest.raises(ValueError, match="need the semantic stage"):
        load_config(None, {"semantic": False, "ablations": [{"name": "a"}]})
    with pytest.raises(ValueError, match="valid for fold 1 only"):
        load_config(None, {"ablations": [{"name": "p", "features": "precomputed"}]})


def test_flow_trains_and_reports_ablations(tmp_path):
    from flows.experiment import experiment

    ratings = write_planted_csv(tmp_path)
    cfg = load_config(
        None,
        {
            "dataset.name": "csv",
            "dataset.ratings_path": str(ratings),
            "split.n_folds": 3,
            "split.folds": [1],
            "models.names": ["gat", "gat-id"],
            "models.training.max_epochs": 10,
            "models.training.eval_every": 5,
            "models.gat.cosine_weight": 0.5,  # so that `no-cosine` is a different model
            "evaluation.n_recommendations": 20,
            "rerank.strategies": [],
            "ablations": [
                {"name": "no-cosine", "cosine_weight": 0},
                {"name": "integrated", "representation": "integrated"},
                {"name": "no-text", "features": "none"},
            ],
            "artifacts_dir": str(tmp_path / "artifacts"),
            "run_name": "abl",
        },
    )
    summary = experiment(cfg)
    run_dir = Path(cfg.artifacts_dir) / "abl"
    recs = pl.read_parquet(run_dir / "recommendations.parquet")
    labels = ["gat", "gat-id", "gat/no-cosine", "gat/integrated", "gat/no-text"]
    assert set(recs["model"]) == set(labels)
    assert all(re.search(rf"^\| {re.escape(label)}( \(ref\.\))? +\|", summary, re.M) for label in labels)

    def lists(label: str) -> pl.DataFrame:
        return recs.filter(pl.col("model") == label).select("user_id", "item_id", "rank")

    # `no-text` is the network of `gat-id` with the same settings and seed: the same lists.
    assert lists("gat/no-text").equals(lists("gat-id"))
    # The others change the loss or the features, so they train to different lists.
    assert not lists("gat/no-cosine").equals(lists("gat"))
    assert not lists("gat/integrated").equals(lists("gat"))
    report = (run_dir / "report.md").read_text()
    assert "## Ablations" in report and "| gat/no-cosine |" in report.split("## Ablations", 1)[1]
