"""Method identity: the names stored in every table are written by `str(Method)` and read back by `Method.parse`."""

import pytest

from flows.config import load_config
from rerank.method import Method


@pytest.mark.parametrize(
    "name, method",
    [
        ("gat", Method("gat")),
        ("bpr-mf", Method("bpr-mf")),
        ("gat/no-cosine", Method("gat", variant="no-cosine")),
        ("gat+bst", Method("gat", strategy="bst")),
        ("gat-id+relevancy", Method("gat-id", strategy="relevancy")),
        ("gat/llm-items+prompt", Method("gat", variant="llm-items", strategy="prompt")),
        ("ease@sample", Method("ease", sample=True)),
    ],
)
def test_a_method_round_trips_through_its_stored_name(name, method):
    assert str(method) == name and Method.parse(name) == method and str(Method.parse(name)) == name


def test_the_kinds_of_method():
    reranked = Method.reranked("gat", "bst")
    assert reranked.is_reranked and not reranked.is_ablation and reranked.rerank_base == Method("gat")
    assert Method.ablation("no-cosine").is_ablation and str(Method.ablation("no-cosine")) == "gat/no-cosine"
    assert str(Method.parse("gat").sampled()) == "gat@sample" and not Method.parse("gat@sample").is_reranked
    with pytest.raises(ValueError, match="separator"):
        Method("gat+bst")


def test_the_config_lists_its_methods_as_typed_identities():
    cfg = load_config(
        None,
        {
            "models.names": ["popularity", "gat"],
            "rerank.base_models": ["gat"],
            "rerank.strategies": ["bst", "relevancy"],
            "ablations": [{"name": "no-cosine", "cosine_weight": 0.0}],
        },
    )
    assert cfg.methods() == ["popularity", "gat", "gat/no-cosine", "gat+bst", "gat+relevancy"]
    assert cfg.method_ids() == [Method.parse(m) for m in cfg.methods()]


def test_the_reranking_table_puts_each_base_before_its_rerankers_sampled_or_not():
    from rerank.report import table_rows

    rerankers = ["gat+bst", "ease+bst", "gat+prompt"]
    assert table_rows(["gat", "ease"], rerankers) == ["gat", "gat+bst", "gat+prompt", "ease", "ease+bst"]
    # with rerank.max_users the base row is the base on the sample; its rerankers still follow it
    assert table_rows(["gat@sample"], rerankers) == ["gat@sample", "gat+bst", "gat+prompt"]
