"""The one place that knows which deep-learning backend runs.

`load(name)` sets TL_BACKEND, applies the tlx fixes and imports TensorLayerX; everything else
uses `tlx` and the few helpers here, and never asks which backend it runs on.
"""
import contextlib
import importlib
import os
import warnings

from imdb_lstm import compat
from imdb_lstm.errors import PipelineError

_loaded = None


def load(name):
    """Import TensorLayerX on backend `name` ("torch" or "paddle") and return the tlx module."""
    global _loaded
    if _loaded is not None:
        if _loaded.BACKEND != name:
            raise PipelineError(f"backend {_loaded.BACKEND} is loaded already; one process runs one backend")
        return _loaded
    # tlx picks its backend once, at first import, from TL_BACKEND; its ~/.tl file is never really read.
    os.environ["TL_BACKEND"] = name
    # OpenMP threads that spin while they wait starve any other busy process on a small machine, and
    # are starved by it: beside one busy process a torch training step took 3.1 s instead of 0.084 s.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    compat.before_import(name)
    with warnings.catch_warnings():
        # Every import warns that the backend is newer than the one tlx 0.5.8 was written for.
        warnings.filterwarnings("ignore", message="The version of the backend")
        warnings.filterwarnings("ignore", message="No ccache found")  # paddle: only for C++ extensions
        tlx = importlib.import_module("tensorlayerx")
    compat.after_import(name, tlx)
    tlx.logging.set_verbosity(tlx.logging.WARN)  # tlx logs every layer it builds; stages print summaries
    _loaded = tlx
    return tlx


def tlx():
    """The tlx module loaded by `load`; model code imports through this."""
    if _loaded is None:
        raise RuntimeError("call imdb_lstm.backend.load(name) before building a model")
    return _loaded


def version():
    return f"{_loaded.BACKEND} {_loaded.BACKEND_VERSION}"


def seed(value):
    """Seed python, numpy and the backend; ask for deterministic kernels."""
    _loaded.set_seed(value)
    if _loaded.BACKEND == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)


def no_grad():
    """A context in which forward passes record no autograd graph (evaluation, prediction)."""
    backend = importlib.import_module(_loaded.BACKEND)
    return backend.no_grad() if hasattr(backend, "no_grad") else contextlib.nullcontext()
