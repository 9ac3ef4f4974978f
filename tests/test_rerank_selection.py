"""Fusion chosen on validation: weight 0 is the base ranking, the choice follows the validation slice, and choosing
it reads nothing of the fold's test side."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from e2ep.store import FileRef, write_parquet
from rerank.config import STRATEGIES, RerankConfig
from rerank.inputs import RerankInputs
from rerank.judges import SemanticJudge
from rerank.run import rerank_recommendations
from rerank.selection import (
    FusionChoice,
    best_on_validation,
    requests_per_user,
    select_fusion,
    validation_requests,
    with_fusion,
)
from semantic.profiles import EmbeddingConfig

N_ITEMS, DIM, N_USERS = 40, 8, 8


def _vectors() -> np.ndarray:
    """Items 0-19 point one way (cluster A), items 20-39 another (cluster B), with a little noise."""
    rng = np.random.default_rng(0)
    v = rng.normal(0, 0.05, (N_ITEMS, DIM))
    v[:20, 0] += 1.0
    v[20:, 1] += 1.0
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _inputs() -> RerankInputs:
    items = _vectors()
    users = np.roll(items[:N_USERS], 1, axis=0)
    return RerankInputs(user_profiles={}, item_profiles={}, user_vectors=users, item_vectors=items)


def _ranking(users, items_in_order) -> pl.DataFrame:
    rows = [(u, i, r + 1, float(100 - r) - (r // 3) * 0.5) for u in users for r, i in enumerate(items_in_order)]
    return pl.DataFrame(
        rows, schema={"user_idx": pl.Int32, "item_idx": pl.Int32, "rank": pl.Int32, "score": pl.Float32}, orient="row"
    )


def _train(validation_items: list[int]) -> pl.DataFrame:
    """Every user liked cluster-A items 0-3 (fit part) and holds `validation_items` out as validation, rated 5."""
    rows = [(u, i, 5.0, 10 + i, False) for u in range(N_USERS) for i in range(4)]
    rows += [(u, i, 5.0, 100 + i, True) for u in range(N_USERS) for i in validation_items]
    return pl.DataFrame(
        rows,
        schema={
            "user_idx": pl.Int32,
            "item_idx": pl.Int32,
            "rating": pl.Float64,
            "timestamp": pl.Int64,
            "is_validation": pl.Boolean,
        },
        orient="row",
    )


# The base model ranks cluster B first; cluster A's items (which the liked-item judge prefers) trail the pool.
BASE_ORDER = [*range(20, 36), 4, 5, 6, 7]


def test_zero_judge_weight_reproduces_the_base_ranking_exactly():
    inputs = _inputs()
    # Ties in the base scores (every third step) must keep the base order too.
    recs = _ranking(range(N_USERS), BASE_ORDER).with_columns(pl.col("score").round(0))
    judge = SemanticJudge(inputs, signal="liked-items")
    inputs.liked = {u: [(i, 5.0) for i in range(4)] for u in range(N_USERS)}
    keep = ["user_idx", "item_idx", "rank"]
    for strategy in STRATEGIES:
        cfg = RerankConfig(pool_size=12, explanations=False, strategies=[strategy])
        base_only = with_fusion(cfg, FusionChoice(0.0, "minmax", "validation"))
        out = rerank_recommendations(recs, strategy, judge, inputs, base_only).recommendations
        assert out.select(keep).equals(recs.select(keep)), strategy
        judged = rerank_recommendations(
            recs, strategy, judge, inputs, with_fusion(cfg, FusionChoice(1.0, "minmax", "validation"))
        ).recommendations
        assert not judged.select(keep).equals(recs.select(keep)), strategy  # so the check above can fail


@pytest.mark.parametrize("validation_items, helps", [([4, 5], True), ([20, 21], False)])
def test_the_fusion_follows_the_validation_slice(validation_items, helps):
    cfg = RerankConfig(pool_size=20, explanations=False, strategies=["prompt"], semantic_signal="liked-items")
    val_recs = _ranking(range(N_USERS), BASE_ORDER)
    choice, cost = select_fusion(val_recs, _train(validation_items), "prompt", _inputs(), cfg)
    assert choice.source == "validation" and choice.users == N_USERS
    assert (choice.judge_weight > 0) == helps
    assert choice.validation_ndcg >= choice.base_ndcg
    assert cost["users"] == N_USERS and cost["requests"] == N_USERS and cost["calls"] == 0
    if helps:  # a gain the sampled users cannot show to be real is not taken
        few = select_fusion(
            val_recs.filter(pl.col("user_idx") < 3), _train(validation_items), "prompt", _inputs(), cfg
        )[0]
        assert few.best_p_value >= cfg.fusion_alpha and few.judge_weight == 0
        assert (
            select_fusion(
                val_recs.filter(pl.col("user_idx") < 3),
                _train(validation_items),
                "prompt",
                _inputs(),
                cfg.model_copy(update={"fusion_alpha": 1.0}),
            )[0].judge_weight
            > 0
        )
    assert set(choice.grid) == {f"{n}@{w:g}" for n in cfg.fusion_normalisations for w in cfg.fusion_grid}


def test_paper_fusion_is_fixed_and_free():
    cfg = RerankConfig(fusion="paper", judge_weight=0.8, base_weight=0.2)
    choice, cost = select_fusion(None, _train([4]), "prompt", _inputs(), cfg)
    assert (choice.judge_weight, choice.source, cost) == (pytest.approx(0.8), "paper", {})
    assert validation_requests(cfg, eligible=500) == 0


def test_validation_call_counts():
    cfg = RerankConfig(validation_users=50, strategies=["prompt", "bst"], pool_size=20)
    assert requests_per_user("prompt", cfg) == 1 and requests_per_user("bst", cfg) == 69
    assert validation_requests(cfg, eligible=30) == 30 * 70
    assert validation_requests(cfg, eligible=900, n_bases=2) == 2 * 50 * 70


def test_base_model_is_the_best_on_validation():
    train = _train([20, 21])
    good, poor = _ranking(range(N_USERS), BASE_ORDER), _ranking(range(N_USERS), [*range(4, 20), 20, 21])
    assert best_on_validation({"poor": poor, "good": good, "none": None}, train, 4.0)[0] == "good"
    assert best_on_validation({"a": good, "b": good}, train, 4.0)[0] == "a"  # ties: the earlier


def test_reranking_a_fold_reads_no_test_ratings(tmp_path, monkeypatch):
    """The whole rerank stage (fusion on validation, then the test lists) on a fold folder with no test file."""
    from tasks.data import FoldRef
    from tasks.rerank import rerank_trained
    from tasks.semantic import StageRef
    from tasks.train import TrainedRef

    monkeypatch.setenv("E2EP_HOME", str(tmp_path / "home"))
    fold_dir = tmp_path / "fold"
    fold_dir.mkdir()
    _train([4, 5]).write_parquet(fold_dir / "train.parquet")  # and no test.parquet at all
    inputs = _inputs()

    def stage(frame_or_matrix, name: str) -> StageRef:
        path = tmp_path / name
        if isinstance(frame_or_matrix, np.ndarray):
            np.save(path, frame_or_matrix)
            return StageRef(file=FileRef(path=str(path), digest=name), report={})
        return StageRef(file=write_parquet(frame_or_matrix, path), report={})

    profiles = {
        key: pl.DataFrame({key: list(range(n)), "profile": [""] * n})
        for key, n in (("item_idx", N_ITEMS), ("user_idx", N_USERS))
    }
    trained = TrainedRef(
        model="base",
        fold=1,
        log={},
        recommendations=write_parquet(_ranking(range(N_USERS), list(range(8, 40))), tmp_path / "r.parquet"),
        validation_recommendations=write_parquet(_ranking(range(N_USERS), BASE_ORDER), tmp_path / "v.parquet"),
    )
    cfg = RerankConfig(pool_size=20, explanations=False, strategies=["prompt"], judge="semantic")
    ref = rerank_trained(
        trained,
        "prompt",
        cfg,
        None,
        EmbeddingConfig(),
        FoldRef(number=1, directory=str(fold_dir), digest="f"),
        stage(profiles["item_idx"], "items.parquet"),
        stage(profiles["user_idx"], "users.parquet"),
        stage(inputs.item_vectors, "items.npy"),
        stage(inputs.user_vectors, "users.npy"),
    )
    assert not Path(fold_dir / "test.parquet").exists()
    assert ref.model == "base+prompt" and ref.base == "base" and ref.fusion.judge_weight > 0
    assert ref.validation_cost["users"] == N_USERS and ref.recommendations.read_parquet().height == N_USERS * 32
