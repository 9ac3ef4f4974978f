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


@pytest.mark.parametrize("overrides, message", [
    ({"evaluation.k": [0, 5]}, "positive"),
    ({"dataset.name": "netflix"}, "ml-100k"),
    ({"models.names": ["lightgcn", "sasrec"]}, "unknown model"),
    ({"dataset.name": "csv"}, "ratings_path"),
    ({"split.typo": 1}, "Extra inputs"),
    ({"relevance.negative_threshold": 4}, "below"),
    ({"profiles.backend": "precomputed"}, "fold 1 only"),
    ({"profiles.backend": "precomputed", "split.folds": [2]}, "fold 1 only"),
])
def test_bad_values_are_rejected_with_a_reason(overrides, message):
    with pytest.raises(ValidationError, match=message):
        load_config(None, overrides)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_reference_is_auto_by_default_and_must_name_a_method_of_the_run():
    assert load_config(None, {"models.names": ["popularity", "bpr-mf"]}).evaluation.reference == "auto"
    assert load_config(None, {"models.names": ["popularity", "bpr-mf"],
                              "evaluation.reference": "bpr-mf"}).evaluation.reference == "bpr-mf"
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
