"""The one place DGL is imported: `from e2ep.dgl_compat import import_dgl`.

DGL 2.1.0's `dgl/__init__.py` imports `dgl.graphbolt`, whose import needs `torchdata.datapipes` (removed from
torchdata) and a native library built for older torch releases, so a plain `import dgl` fails on torch 2.13. The
model code uses only `dgl.graph` and `dgl.nn.pytorch`, which do not touch graphbolt, so an empty placeholder
module is registered under `dgl.graphbolt` before the import. Nothing in site-packages is modified.
`DGLBACKEND=pytorch` is set (unless set already) so DGL neither asks for a backend nor writes `~/.dgl/config.json`.
"""

from __future__ import annotations

import os
import sys
import types
from functools import cache

_PLACEHOLDER_DOC = "Placeholder for DGL's graphbolt, which cannot load on this torch (see e2ep.dgl_compat)."


@cache
def import_dgl() -> types.ModuleType:
    """Import and return the `dgl` module; raises `ConfigError` with a one-line reason when it cannot load."""
    if sys.modules.get("dgl") is not None:
        return sys.modules["dgl"]
    os.environ.setdefault("DGLBACKEND", "pytorch")
    placeholder = "dgl.graphbolt" not in sys.modules
    if placeholder:
        module = types.ModuleType("dgl.graphbolt", _PLACEHOLDER_DOC)
        module.__path__ = []  # a package, so `import dgl.graphbolt.x` fails cleanly instead of oddly
        sys.modules["dgl.graphbolt"] = module
    try:
        import dgl
    except Exception as exc:  # ImportError, or DGL's own errors while loading its native library
        if placeholder:
            sys.modules.pop("dgl.graphbolt", None)
        from e2ep.errors import ConfigError

        raise ConfigError(
            f"DGL could not be imported ({type(exc).__name__}: {exc}); use models.gat.backend=pyg"
        ) from exc
    return dgl


def dgl_has_cuda() -> bool:
    """Whether the installed DGL build can place graphs on a CUDA GPU (the PyPI wheels are CPU-only)."""
    import torch

    if not torch.cuda.is_available():
        return False
    dgl = import_dgl()
    try:
        dgl.graph(([0], [0]), num_nodes=1).to("cuda")
    except Exception:  # DGL raises assorted errors (AssertionError, DGLError) for a CPU-only build
        return False
    return True
