"""The one place that knows which deep-learning backend runs.

`load(name)` sets TL_BACKEND, pins the kernels, applies the tlx fixes and imports TensorLayerX;
everything else uses `tlx` and the few helpers here, and never asks which backend it runs on.
What differs per backend is in imdb_lstm/backends/, one module each.
"""
import contextlib
import os
import warnings

from imdb_lstm import backends, kernels
from imdb_lstm.errors import PipelineError

_loaded = None
_entry = None  # the imdb_lstm.backends module of the loaded backend
_device = None
_module_classes = {}  # model layers class → its tlx.nn.Module class (module_class)


def load(name, device="cpu", reproducible=True):
    """Import TensorLayerX on backend `name` (one of imdb_lstm.backends.NAMES) and return the tlx module.

    device: "cpu", "gpu", or "auto" (the GPU when the backend sees one).
    reproducible: pin the CPU kernels, so reruns give the same bits (on other CPU models too where the
    backend's CROSS_CPU_FLAG says so; imdb_lstm/kernels.py); False lets the backend pick the fastest.
    """
    global _loaded, _entry
    if _loaded is not None:
        if _loaded.BACKEND != name:
            raise PipelineError(f"backend {_loaded.BACKEND} is loaded already; one process runs one backend")
        return _loaded
    entry = backends.get(name)
    # tlx picks its backend once, at first import, from TL_BACKEND; its ~/.tl file is never really read.
    os.environ["TL_BACKEND"] = name
    # OpenMP threads that spin long while they wait starve, and are starved by, any other busy process
    # on a small machine: beside one, a torch step took 1.4-3.4 s instead of 0.05 s. A short spin
    # keeps the quiet-machine speed (0.052-0.055 s) and stays at 0.11 s beside a busy process.
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    if reproducible:
        kernels.pin(entry)
    with warnings.catch_warnings():
        # Every import warns that the backend is newer than the one tlx 0.5.8 was written for.
        warnings.filterwarnings("ignore", message="The version of the backend")
        # paddle, at its import (in before_import): about building C++ extensions, which nothing here does
        warnings.filterwarnings("ignore", message="No ccache found")
        entry.before_import()
        import tensorlayerx as tlx
    entry.after_import(tlx)
    if reproducible:
        entry.pin_after_import()
    tlx.logging.set_verbosity(tlx.logging.WARN)  # tlx logs every layer it builds; stages print summaries
    _use_device(name, entry, device)
    _loaded, _entry = tlx, entry
    return tlx


def _use_device(name, entry, device):
    """Make new tensors (weights, and batches from tlx.convert_to_tensor) live on the chosen device."""
    global _device
    has_gpu = entry.has_gpu()
    if device == "gpu" and not has_gpu:
        raise PipelineError(f"device gpu was asked for, but {name} sees no GPU: use device cpu or auto")
    _device = "gpu" if has_gpu and device != "cpu" else "cpu"
    entry.use_device(_device == "gpu")


def tlx():
    """The tlx module loaded by `load`; model code imports through this."""
    if _loaded is None:
        raise RuntimeError("call imdb_lstm.backend.load(name) before building a model")
    return _loaded


def module_class(layers):
    """`layers` (a class of a model's layers and methods) joined to the loaded tlx's nn.Module, made once: a
    model class cannot exist before `load`, which picks the module it derives from."""
    if layers not in _module_classes:
        name = layers.__name__.removesuffix("Layers")
        _module_classes[layers] = type(name, (layers, tlx().nn.Module), {"__module__": layers.__module__})
    return _module_classes[layers]


def name():
    return _loaded.BACKEND


def version():
    return f"{_loaded.BACKEND} {_loaded.BACKEND_VERSION}"


def device():
    """"cpu" or "gpu": where `load` put the tensors."""
    return _device


def seed(value):
    """Seed python, numpy and the backend; ask for deterministic kernels."""
    _loaded.set_seed(value)
    _entry.deterministic()


def set_trainable(weight, trainable):
    """Whether backward passes compute a gradient for `weight` (none is needed while it is frozen)."""
    _entry.set_trainable(weight, trainable)


def no_grad():
    """A context in which forward passes record no autograd graph (evaluation, prediction)."""
    return _entry.no_grad()


def detach(tensors):
    """`tensors` (a tensor, or a tuple of them, such as an LSTM's (h, c)) as constants: no gradient flows back
    through them."""
    return tuple(map(detach, tensors)) if isinstance(tensors, tuple | list) else _entry.detach(tensors)


def adversarial_objective(loss_at, pushed_loss_at, x, push):
    """What a training step's loss must be for it to descend loss_at(x) + pushed_loss_at(x + push(g, x)),
    where g is the gradient of loss_at at x; push gets g and x as constants and returns a constant. Each
    function is called once."""
    return _entry.adversarial_objective(loss_at, pushed_loss_at, x, push)


def optimizer_state(step):
    """The Adam state of a tlx TrainOneStep as {name: array} ({} before its first step)."""
    return _entry.optimizer_state(step.net_with_train.optimizer)


def restore_optimizer(step, state):
    """Give a fresh TrainOneStep's optimizer the state optimizer_state() took, so its next step is the
    one the saved optimizer would have made."""
    if state:
        _entry.load_optimizer_state(_loaded, step.net_with_train.optimizer, step.net_with_train.train_weights, state)


def mixed_precision():
    """A context in which matrix products run in bfloat16 on the device in use, on a backend that has it (full
    precision on the others)."""
    return _entry.mixed_precision(_device == "gpu") if _entry.mixed_precision else contextlib.nullcontext()


def set_rates(step, rate_of):
    """From its next step on, `step` (a tlx TrainOneStep) moves each weight it trains at rate_of(weight)."""
    train = step.net_with_train
    _entry.set_rates(_loaded, train.optimizer, train.train_weights, [rate_of(w) for w in train.train_weights])


def rng_state():
    """The backend's random generator state (dropout draws from it), as arrays."""
    return _entry.rng_state()


def set_rng_state(arrays):
    _entry.set_rng_state(arrays)


def start_process_group(comm):
    """Join the processes torchrun started (imdb_lstm/distributed.py); (this process's rank, their count)."""
    return _entry.start_process_group(comm)


def set_gradient_weight(weight):
    """What this process's gradients count in the sum of the next optimizer step."""
    _entry.set_gradient_weight(weight)


def all_sum(array):
    """A numpy array summed over the processes."""
    return _entry.all_sum(array)
