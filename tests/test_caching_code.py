"""Task cache keys follow the code a task runs: a model's training is keyed on its own modules only."""

import pytest

from e2ep.codehash import PROJECT_ROOT, code_digest, import_closure
from models.registry import model_module


def _files(*modules: str) -> set[str]:
    return {str(p.relative_to(PROJECT_ROOT)) for p in import_closure(*modules)}


def test_a_models_training_closure_holds_its_own_code_and_no_other_model():
    als = _files(model_module("als"))
    assert {"models/als.py", "models/base.py", "models/training.py"} <= als
    assert not any(f.startswith("models/gat/") or f in {"models/lightgcn.py", "models/ngcf.py"} for f in als)
    gat = _files(model_module("gat"))
    assert {"models/gat/network.py", "models/gat/layers.py", "models/training.py"} <= gat
    assert "models/als.py" not in gat
    assert code_digest(model_module("als")) != code_digest(model_module("gat"))


def test_settings_modules_and_the_registry_are_keyed_by_value_not_followed():
    closure = _files("tasks.train")
    # Config classes reach a task as setting values (part of its inputs); the registry would pull in every model.
    assert not any(f.endswith("config.py") for f in closure)
    assert "models/registry.py" not in closure and not any(f.startswith("models/gat/") for f in closure)
    assert {"tasks/train.py", "models/base.py", "tasks/data.py"} <= closure


def test_imports_under_type_checking_are_not_code_that_runs(tmp_path, monkeypatch):
    # A module importing another only for type hints: the hinted module is not part of its code.
    package = tmp_path / "models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hinted_probe.py").write_text("X = 1\n")
    (package / "typing_only_probe.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from models.hinted_probe import X\n"
    )
    monkeypatch.setattr("e2ep.codehash.PROJECT_ROOT", tmp_path)
    closure = {p.name for p in import_closure("models.typing_only_probe")}
    assert closure == {"__init__.py", "typing_only_probe.py"}


def test_an_unknown_module_is_an_error():
    with pytest.raises(ModuleNotFoundError):
        import_closure("models.no_such_model")
