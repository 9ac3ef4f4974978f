"""Heavy libraries load only when a job needs them: each costs every worker process and the flow process 100-260
MB of memory (torch_geometric loads transformers and pandas; sentence-transformers, DGL, cornac, litellm)."""

import subprocess
import sys

import pytest

HEAVY = ("torch_geometric", "dgl", "cornac", "sentence_transformers", "transformers", "litellm", "implicit")


@pytest.mark.parametrize("module", ["models.registry", "tasks.train", "tasks.semantic", "flows.experiment"])
def test_importing_a_stage_loads_no_heavy_library(module):
    probe = (f"import sys, {module}; "
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_the_probe_sees_a_library_a_fit_loads():
    # LightGCN's graph normalisation needs torch_geometric: the same probe reports it once it is loaded.
    probe = ("import sys, torch; from models.propagation import bipartite_adjacency; "
             "bipartite_adjacency(torch.tensor([[0, 1], [0, 1]]), 2, 2); print('torch_geometric' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "True"
