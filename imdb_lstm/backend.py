"""The one place that knows which deep-learning backend runs.

`load(name)` sets TL_BACKEND, applies the tlx fixes and imports TensorLayerX; everything else
uses `tlx` and the few helpers here, and never asks which backend it runs on.
"""
import importlib
import os
import warnings

import numpy as np

from imdb_lstm import compat, kernels
from imdb_lstm.errors import PipelineError

_loaded = None
_device = None


def load(name, device="cpu", reproducible=True):
    """Import TensorLayerX on backend `name` ("torch" or "paddle") and return the tlx module.

    device: "cpu", "gpu", or "auto" (the GPU when the backend sees one).
    reproducible: pin the CPU kernels, so results are the same bits on any x86-64 CPU with AVX2
    (imdb_lstm/kernels.py); False lets the backend pick the fastest for this CPU.
    """
    global _loaded
    if _loaded is not None:
        if _loaded.BACKEND != name:
            raise PipelineError(f"backend {_loaded.BACKEND} is loaded already; one process runs one backend")
        return _loaded
    # tlx picks its backend once, at first import, from TL_BACKEND; its ~/.tl file is never really read.
    os.environ["TL_BACKEND"] = name
    # OpenMP threads that spin long while they wait starve, and are starved by, any other busy process
    # on a small machine: beside one, a torch step took 1.4-3.4 s instead of 0.05 s. A short spin
    # keeps the quiet-machine speed (0.052-0.055 s) and stays at 0.11 s beside a busy process.
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    if reproducible:
        kernels.pin(name)
    compat.before_import(name)
    with warnings.catch_warnings():
        # Every import warns that the backend is newer than the one tlx 0.5.8 was written for.
        warnings.filterwarnings("ignore", message="The version of the backend")
        warnings.filterwarnings("ignore", message="No ccache found")  # paddle: only for C++ extensions
        tlx = importlib.import_module("tensorlayerx")
    compat.after_import(name, tlx)
    if reproducible:
        kernels.pin_threads(name)
    tlx.logging.set_verbosity(tlx.logging.WARN)  # tlx logs every layer it builds; stages print summaries
    _use_device(name, device)
    _loaded = tlx
    return tlx


def _use_device(name, device):
    """Make new tensors (weights, and batches from tlx.convert_to_tensor) live on the chosen device."""
    global _device
    backend = importlib.import_module(name)
    has_gpu = backend.cuda.is_available() if name == "torch" else backend.device.cuda.device_count() > 0
    if device == "gpu" and not has_gpu:
        raise PipelineError(f"device gpu was asked for, but {name} sees no GPU: use device cpu or auto")
    _device = "gpu" if has_gpu and device != "cpu" else "cpu"
    if name == "paddle":
        backend.set_device(_device)
    elif _device == "gpu":  # not on the CPU: a default device intercepts every torch call
        backend.set_default_device("cuda")


def tlx():
    """The tlx module loaded by `load`; model code imports through this."""
    if _loaded is None:
        raise RuntimeError("call imdb_lstm.backend.load(name) before building a model")
    return _loaded


def version():
    return f"{_loaded.BACKEND} {_loaded.BACKEND_VERSION}"


def device():
    """"cpu" or "gpu": where `load` put the tensors."""
    return _device


def seed(value):
    """Seed python, numpy and the backend; ask for deterministic kernels."""
    _loaded.set_seed(value)
    if _loaded.BACKEND == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)


def set_trainable(weight, trainable):
    """Whether backward passes compute a gradient for `weight` (none is needed while it is frozen)."""
    if _loaded.BACKEND == "torch":
        weight.requires_grad_(trainable)
    else:
        weight.stop_gradient = not trainable


def no_grad():
    """A context in which forward passes record no autograd graph (evaluation, prediction)."""
    return importlib.import_module(_loaded.BACKEND).no_grad()


def optimizer_state(step):
    """The Adam state of a tlx TrainOneStep as {name: array} ({} before its first step)."""
    optimizer = _backend_optimizer(step)
    if optimizer is None:
        return {}
    if _loaded.BACKEND == "torch":
        return {f"{i}/{key}": value.detach().cpu().numpy() for i, state in optimizer.state_dict()["state"].items()
                for key, value in state.items()}
    return {name: value.numpy() for name, value in optimizer.state_dict().items()}


def restore_optimizer(step, state):
    """Give a fresh TrainOneStep's optimizer the state optimizer_state() took, so its next step is the
    one the saved optimizer would have made."""
    if not state:
        return
    weights = step.net_with_train.train_weights
    # tlx creates the backend's optimizer in its first gradient(): a loss of 0 creates it, and gives
    # every weight a gradient of +0, what a finished step leaves (torch clears it before the next one).
    step.net_with_train.optimizer.gradient(_loaded.add_n([_loaded.reduce_sum(w * 0) for w in weights]), weights)
    optimizer = _backend_optimizer(step)
    backend = importlib.import_module(_loaded.BACKEND)
    if _loaded.BACKEND == "torch":
        saved = {}
        for name, value in state.items():
            i, key = name.split("/")
            saved.setdefault(int(i), {})[key] = backend.from_numpy(value.copy())
        optimizer.load_state_dict({"state": saved, "param_groups": optimizer.state_dict()["param_groups"]})
    else:
        optimizer.set_state_dict({name: backend.to_tensor(value) for name, value in state.items()})


def _backend_optimizer(step):
    """The torch or paddle optimizer inside a tlx TrainOneStep, or None before its first step."""
    backend = importlib.import_module(_loaded.BACKEND)
    kind = backend.optim.Optimizer if _loaded.BACKEND == "torch" else backend.optimizer.Optimizer
    return next((v for v in vars(step.net_with_train.optimizer).values() if isinstance(v, kind)), None)


def rng_state():
    """The backend's random generator state (dropout draws from it), as arrays."""
    backend = importlib.import_module(_loaded.BACKEND)
    if _loaded.BACKEND == "torch":
        return [backend.get_rng_state().numpy()]
    arrays = []
    for state in backend.get_rng_state():  # paddle's: a few numbers, then the engine's state as text bytes
        *numbers, engine = state.__getstate__()
        arrays += [np.array(numbers, dtype=np.int64), np.array(engine, dtype=np.uint8)]
    return arrays


def set_rng_state(arrays):
    backend = importlib.import_module(_loaded.BACKEND)
    if _loaded.BACKEND == "torch":
        backend.set_rng_state(backend.from_numpy(arrays[0].copy()))
        return
    kind = type(backend.get_rng_state()[0])
    states = []
    for numbers, engine in zip(arrays[::2], arrays[1::2]):
        state = kind.__new__(kind)
        state.__setstate__((*numbers.tolist(), engine.tolist()))
        states.append(state)
    backend.set_rng_state(states)
