"""The typed configuration: defaults, files, overrides and the errors users see."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.config import ExperimentConfig, load_config


def test_defaults_describe_the_paper_setup():
    cfg = ExperimentConfig()
    assert cfg.dataset.name == "ml-100k" and cfg.split.n_folds == 5 and cfg.split.official
    assert cfg.evaluation.k == [5, 10, 20] and cfg.evaluation.protocols == ["full", "paper"]
    assert cfg.relevance.positive_threshold == 4 and cfg.relevance.negative_threshold == 2


def test_file_then_overrides(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[dataset]\nname = "ml-1m"\n[evaluation]\nk = [20, 5]\n')
    cfg = load_config(path, {"split.seed": 7, "models.training.max_epochs": 3})
    assert cfg.dataset.name == "ml-1m"
    assert cfg.evaluation.k == [5, 20]  # sorted, deduplicated
    assert cfg.split.seed == 7 and cfg.models.training.max_epochs == 3


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"evaluation.k": [0, 5]}, "positive"),
        ({"dataset.name": "netflix"}, "ml-100k"),
        ({"models.names": ["lightgcn", "sasrec"]}, "unknown model"),
        ({"dataset.name": "csv"}, "ratings_path"),
        ({"split.typo": 1}, "Extra inputs"),
        ({"relevance.negative_threshold": 4}, "below"),
        ({"profiles.backend": "precomputed"}, "fold 1 only"),
        ({"profiles.backend": "precomputed", "split.folds": [2]}, "fold 1 only"),
    ],
)
def test_bad_values_are_rejected_with_a_reason(overrides, message):
    with pytest.raises(ValidationError, match=message):
        load_config(None, overrides)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_reference_is_auto_by_default_and_must_name_a_method_of_the_run():
    assert load_config(None, {"models.names": ["popularity", "bpr-mf"]}).evaluation.reference == "auto"
    assert (
        load_config(
            None, {"models.names": ["popularity", "bpr-mf"], "evaluation.reference": "bpr-mf"}
        ).evaluation.reference
        == "bpr-mf"
    )
    with pytest.raises(ValidationError, match="evaluation.reference 'lightgcn' is not a method of this run"):
        load_config(None, {"models.names": ["popularity", "bpr-mf"], "evaluation.reference": "lightgcn"})


def test_seeds_default_to_the_single_seed_and_each_fit_gets_its_own():
    training = load_config(None).models.training
    assert training.seeds is None and training.run_seeds() == [0]
    training = load_config(Path(__file__).parents[1] / "configs" / "seeds.toml").models.training
    assert training.run_seeds() == [0, 1, 2]
    one = training.for_seed(2)
    # A fit's settings do not depend on the other seeds of the run: seed 0 of [0, 1, 2] is the default fit.
    assert (one.seed, one.seeds) == (2, None) and training.for_seed(0) == load_config(None).models.training


def test_schema_is_a_prefect_friendly_json_schema():
    schema = ExperimentConfig.model_json_schema()
    assert {"dataset", "split", "models", "evaluation"} <= set(schema["properties"])


def test_every_auto_is_resolved_once_at_the_start(monkeypatch):
    from e2ep.errors import ConfigError
    from flows.config import rerank_settings, resolve_auto, semantic_settings

    monkeypatch.delenv("E2EP_LLM_MODEL", raising=False)
    cfg = load_config(None, {"llm.max_calls": 10})
    with pytest.raises(ConfigError, match="resolve_auto"):
        semantic_settings(cfg)  # a stage handed an unresolved config says so instead of guessing
    offline = resolve_auto(cfg)
    assert (offline.profiles.backend, offline.rerank.judge, offline.llm.model) == ("template", "semantic", None)
    assert offline.evaluation.reference == "auto"  # chosen later, from the run's validation results
    assert resolve_auto(offline) == offline and offline.llm.max_calls == 10  # idempotent; the caps stay
    assert semantic_settings(offline)[1].max_calls is None and rerank_settings(offline)[1] is None
    monkeypatch.setenv("E2EP_LLM_MODEL", "openai/stub-model")
    online = resolve_auto(cfg)
    assert (online.profiles.backend, online.rerank.judge, online.llm.model) == ("llm", "llm", "openai/stub-model")
    assert rerank_settings(online)[1] == semantic_settings(online)[1]
