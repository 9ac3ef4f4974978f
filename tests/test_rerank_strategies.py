"""The four strategies with the offline semantic judge, and the algorithms underneath, against known orders."""

import itertools
import math

import numpy as np
import polars as pl
import pytest

from rerank.config import RerankConfig
from rerank.fusion import fuse, fused_order, normalise, order_scores
from rerank.inputs import UserContext
from rerank.judges import SemanticJudge
from rerank.run import rerank_recommendations, rerank_sample
from rerank.strategies import (
    binary_insertion,
    bst_strategy,
    max_bst_comparisons,
    relevancy_batches,
    relevancy_strategy,
    sliding_window_sort,
)
from tests.rerank_fakes import base_recs, make_inputs

STRATEGIES = ("prompt", "bst", "batch", "relevancy")


def test_every_strategy_permutes_each_pool_and_is_deterministic():
    inputs, recs = make_inputs(), base_recs()
    cfg = RerankConfig(base_model="lightgcn", pool_size=20)
    base = {u: g.sort("rank")["item_idx"].to_list() for (u,), g in recs.group_by("user_idx")}
    for strategy in STRATEGIES:
        result = rerank_recommendations(recs, strategy, SemanticJudge(inputs), inputs, cfg)
        again = rerank_recommendations(recs, strategy, SemanticJudge(inputs), inputs, cfg)
        assert result.recommendations.equals(again.recommendations), strategy
        out = result.recommendations
        for user, items in base.items():
            mine = out.filter(pl.col("user_idx") == user).sort("rank")
            assert mine["rank"].to_list() == list(range(1, 26))
            got = mine["item_idx"].to_list()
            assert sorted(got[:20]) == sorted(items[:20]) and got[20:] == items[20:], strategy
        assert result.cost["users"] == 4 and result.cost["calls"] == 0 and result.cost["requests"] >= 4
        # A rationale for every reranked item, none for the untouched tail; templates name shared attributes.
        notes = result.explanations
        assert notes.height == 4 * 20 and notes["explanation"].str.len_chars().min() > 10
        assert notes.join(out, on=["user_idx", "item_idx", "rank"]).height == notes.height


def test_strategies_that_order_agree_under_a_consistent_judge():
    # The semantic judge is a total order, so listwise, BST and the batch merge must all recover it.
    inputs, recs = make_inputs(seed=3), base_recs(seed=4)
    cfg = RerankConfig(base_model="x", judge_weight=1.0, base_weight=0.0)
    orders = {
        s: rerank_recommendations(recs, s, SemanticJudge(inputs), inputs, cfg).recommendations
        for s in ("prompt", "bst", "batch")
    }
    assert orders["prompt"].equals(orders["bst"]) and orders["prompt"].equals(orders["batch"])
    judge = SemanticJudge(inputs)
    top = orders["prompt"].filter((pl.col("user_idx") == 2) & (pl.col("rank") <= 20)).sort("rank")["item_idx"]
    assert np.all(np.diff(judge.affinity(2, top.to_list())) <= 0)


def test_max_users_reranks_one_seeded_sample_for_every_strategy():
    inputs, recs = make_inputs(n_users=12), base_recs(n_users=12)
    cfg = RerankConfig(base_model="x", max_users=5, seed=7)
    sample = rerank_sample(cfg, 12)
    assert sample is not None and len(sample) == 5 and sample != list(range(5))
    for strategy in STRATEGIES:
        result = rerank_recommendations(recs, strategy, SemanticJudge(inputs), inputs, cfg)
        # Only the sampled users' lists come back (so only they are evaluated), each reranked.
        assert sorted(set(result.recommendations["user_idx"])) == sample, strategy
        assert result.cost["users"] == 5 and sorted(set(result.explanations["user_idx"])) == sample
    assert rerank_sample(cfg.model_copy(update={"seed": 8}), 12) != sample
    assert rerank_sample(cfg.model_copy(update={"max_users": 12}), 12) is None  # everyone: no sample


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 33])
def test_bst_recovers_a_true_order_within_the_comparison_bound(n):
    rng = np.random.default_rng(n)
    truth = [int(i) for i in rng.permutation(n)]
    position = {item: i for i, item in enumerate(truth)}
    asked: list[tuple[int, int]] = []

    def better(a, b):
        asked.append((a, b))
        return a if position[a] < position[b] else b

    ranked, comparisons = binary_insertion(list(range(n)), better)
    assert ranked == truth
    assert comparisons == len(asked) <= max_bst_comparisons(n)
    assert len({frozenset(p) for p in asked}) == len(asked), "a pair was judged twice"
    assert max_bst_comparisons(20) == 69


class BiasedJudge:
    """Always prefers the first item it is shown (pure position bias); counts requests."""

    kind, parallel = "test", False

    def __init__(self):
        self.requests = 0

    def prefer(self, ctx, a, b):
        self.requests += 1
        return a


def test_bst_both_orders_cancels_position_bias():
    ctx = UserContext(0, [5, 3, 9, 1, 7], [1.0, 0.9, 0.8, 0.7, 0.6])
    judge = BiasedJudge()
    verdict = bst_strategy(judge, ctx, RerankConfig(base_model="x", bst_both_orders=True))
    # Every pair's two answers disagree, so the base order decides everywhere.
    assert list(np.argsort(-verdict.scores)) == [0, 1, 2, 3, 4]
    assert judge.requests == verdict.requests and verdict.requests <= 2 * max_bst_comparisons(5)
    one_way = bst_strategy(BiasedJudge(), ctx, RerankConfig(base_model="x"))
    assert list(np.argsort(-one_way.scores)) != [0, 1, 2, 3, 4]  # asked one way, the bias reorders the pool


@pytest.mark.parametrize(
    ("n", "window", "stride"), [(20, 5, 2), (23, 5, 2), (20, 5, 1), (9, 4, 3), (5, 5, 2), (3, 5, 2), (13, 3, 1)]
)
def test_batch_merge_recovers_a_true_order(n, window, stride):
    for seed in range(5):
        truth = [int(i) for i in np.random.default_rng(seed).permutation(n)]
        position = {item: i for i, item in enumerate(truth)}
        sizes = []

        def order(segment, sizes=sizes, position=position):
            sizes.append(len(segment))
            return sorted(segment, key=position.__getitem__)

        ranked, asked = sliding_window_sort(list(range(n)), order, window, stride)
        assert ranked == truth and asked == len(sizes) and max(sizes) <= window
    # Already in the judge's order: one pass over the list, nothing moves.
    windows_per_pass = 1 + math.ceil(max(n - window, 0) / stride)
    assert sliding_window_sort(list(range(n)), sorted, window, stride)[1] == windows_per_pass


def test_relevancy_scores_each_candidate_in_appearances_different_batches():
    items = list(range(20))
    batches = relevancy_batches(items, 5, 3, seed=7)
    assert len(batches) == 12 and all(len(b) == 5 for b in batches)
    counts = {i: sum(i in b for b in batches) for i in items}
    assert set(counts.values()) == {3}
    assert len({frozenset(b) for b in batches}) == 12  # no batch repeated
    assert {len(b) for b in relevancy_batches(list(range(7)), 5, 4, seed=0)} == {5, 2}

    scored: dict[int, list[float]] = {}

    class Scorer:
        kind, parallel = "test", False

        def scores(self, ctx, batch):
            for i, item in enumerate(batch):
                scored.setdefault(item, []).append(10.0 * item + i)  # position in the batch adds noise
            return [10.0 * item + i for i, item in enumerate(batch)]

    ctx = UserContext(1, items, [float(-i) for i in items])
    verdict = relevancy_strategy(Scorer(), ctx, RerankConfig(base_model="x", relevancy_appearances=3))
    assert all(len(v) == 3 for v in scored.values()) and verdict.requests == 12
    assert np.allclose(verdict.scores, [np.mean(scored[i]) for i in items])


def test_fusion_normalises_within_the_pool():
    assert np.allclose(normalise([3.0, 1.0, 2.0]), [1.0, 0.0, 0.5])
    assert np.allclose(normalise([3.0, 1.0, 2.0], "rank"), [1.0, 0.0, 0.5])
    assert np.allclose(normalise([10.0, 9.9, 0.0]), [1.0, 0.99, 0.0])
    assert np.allclose(normalise([10.0, 9.9, 0.0], "rank"), [1.0, 0.5, 0.0])
    assert np.allclose(normalise([4.0, 4.0]), [1.0, 1.0]) and np.allclose(normalise([7.0], "rank"), [1.0])
    # An order gives −position, so both normalisations agree on it.
    scores = order_scores([30, 10, 20], [10, 20, 30])
    assert np.allclose(normalise(scores), normalise(scores, "rank")) and np.allclose(normalise(scores), [0.5, 0, 1])
    base, judge = [9.0, 5.0, 1.0], [0.0, 50.0, 100.0]
    fused = fuse(base, judge, 0.8, 0.2)
    assert np.allclose(fused, [0.2, 0.8 * 0.5 + 0.2 * 0.5, 0.8])
    assert np.allclose(fuse(base, judge, 4, 1), fused)  # weights are relative
    assert fused_order([7, 8, 9], fused) == [9, 8, 7]
    assert fused_order([7, 8, 9], np.array([0.5, 0.5, 0.5])) == [7, 8, 9]  # ties keep the base order
    for a, b in itertools.permutations(range(3), 2):
        assert fused_order([a, b], np.array([0.1, 0.1])) == [a, b]


def test_template_explanations_name_what_user_and_item_share():
    from rerank.explain import template_explanation

    inputs = make_inputs()
    inputs.liked[0] = [(9, 5.0)]  # Movie 9 shares Actor 2 with Movie 2
    inputs.item_vectors[9] = inputs.item_vectors[2]
    text = template_explanation(0, 2, inputs)  # user 0 likes Drama and tag1/tag2, dislikes Horror
    assert "tag2" in text and "Actor 2, as in Movie 9" in text and "close to Movie 9, which you rated 5/5" in text
    assert "though it is Horror" in text
    assert template_explanation(0, 4, inputs).startswith("Fits your taste for Drama")
