"""Heavy libraries load only when a job needs them: each costs every worker process and the flow process 100-260
MB of memory (torch_geometric loads transformers and pandas; sentence-transformers, DGL, cornac, litellm)."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch_geometric", "dgl", "cornac", "sentence_transformers", "transformers", "litellm", "implicit")


STAGES = ["models.registry", "tasks.train", "tasks.semantic", "flows.experiment"]


@pytest.fixture(scope="module")
def heavy_loaded_by() -> dict[str, list[str]]:
    """The heavy libraries loaded once each stage is imported, the stages imported one after the other in one
    fresh interpreter (one start-up instead of one per stage). A stage imported after clean ones loads a heavy
    library exactly when it would alone: what the earlier ones loaded is clean, and the union is checked."""
    probe = (
        "import importlib, json, sys\n"
        f"loaded = {{}}\nfor module in {STAGES!r}:\n"
        "    importlib.import_module(module)\n"
        f"    loaded[module] = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps(loaded))"
    )
    return json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)


@pytest.mark.parametrize("module", STAGES)
def test_importing_a_stage_loads_no_heavy_library(module, heavy_loaded_by):
    assert heavy_loaded_by[module] == []


def test_the_probe_sees_a_library_a_fit_loads():
    # LightGCN's graph normalisation needs torch_geometric: the same probe reports it once it is loaded.
    probe = (
        "import sys, torch; from models.propagation import bipartite_adjacency; "
        "bipartite_adjacency(torch.tensor([[0, 1], [0, 1]]), 2, 2); print('torch_geometric' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
        == "True"
    )
