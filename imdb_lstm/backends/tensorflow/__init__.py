"""tensorflow (TensorFlow 2 with Keras 3): an optional install, requirements-tensorflow.txt."""
import contextlib
import importlib
import os

from imdb_lstm.backends import framework_optimizer
from imdb_lstm.backends.tensorflow import fixes

PACKAGE, REQUIREMENTS = "tensorflow", "requirements-tensorflow.txt"

# The pinned kernels give the same bits on every CPU tried: AMD EPYCs with and without AVX-512, and an
# Intel Xeon with AVX-512 and AMX (tests/test_reproducible.py).
CROSS_CPU_FLAG = "avx2"
KERNELS = {
    # TF's oneDNN ops pick AVX2, AVX-512 or AMX kernels by CPU; off, TF runs its Eigen kernels.
    "TF_ENABLE_ONEDNN_OPTS": "0",
    # Eigen's matrix products still call oneDNN's sgemm, which picks its instruction set by CPU too:
    # capped at AVX2, as for torch (AVX-512 gave other bits here).
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
THREADS = 2  # Eigen splits its work by thread count; a fixed one everywhere


def _tf():
    return importlib.import_module("tensorflow")  # not at import: KERNELS must be set first


def before_import():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up notices about CPU instructions


def after_import(tlx):
    fixes.run_lstm_as_compiled_scans(tlx)


def pin_after_import():
    config = _tf().config.threading
    config.set_intra_op_parallelism_threads(THREADS)
    config.set_inter_op_parallelism_threads(1)


def has_gpu():
    return bool(_tf().config.list_physical_devices("GPU"))


def use_device(gpu):
    if not gpu and has_gpu():
        _tf().config.set_visible_devices([], "GPU")


def deterministic():
    """The same kernel, run twice, sums in the same order. Only once seeded: then TF refuses unseeded
    random ops, and loading a saved model (whose weights start random) seeds nothing."""
    _tf().config.experimental.enable_op_determinism()


def set_trainable(weight, trainable):
    """Nothing to switch: TF takes gradients only for the weights a step lists (training.make_step
    leaves a frozen embedding out)."""


def no_grad():
    return contextlib.nullcontext()  # TF records a graph only inside a GradientTape


def detach(tensor):
    return _tf().stop_gradient(tensor)


def adversarial_objective(loss_at, pushed_loss_at, x, push):
    with _tf().GradientTape() as tape:  # inside the step's own tape, which records this one's work too
        tape.watch(x)
        loss = loss_at(x)
    constant = _tf().stop_gradient
    return loss + pushed_loss_at(x + push(constant(tape.gradient(loss, x)), constant(x)))


def _keras_optimizer(optimizer):
    return framework_optimizer(optimizer, importlib.import_module("keras").optimizers.Optimizer)


def optimizer_state(optimizer):
    optimizer = _keras_optimizer(optimizer)
    if not optimizer.built:
        return {}
    return {str(i): variable.numpy() for i, variable in enumerate(optimizer.variables)}


def load_optimizer_state(tlx, optimizer, weights, state):
    optimizer = _keras_optimizer(optimizer)
    optimizer.build(weights)
    for i, variable in enumerate(optimizer.variables):
        variable.assign(state[str(i)].reshape(variable.shape))  # the checkpoint keeps scalars as 1-element arrays


mixed_precision = None  # tlx's layers here are not checked in half precision: full precision everywhere
start_process_group = set_gradient_weight = all_sum = None  # one process: the process groups of torchrun are torch's


set_rates = None  # tlx's optimizer holds one learning rate, fixed when it is made


def rng_state():
    """None: TF's dropout draws from generators held inside its kernels, which no API saves or sets;
    so on this backend train keeps no checkpoint when the model has dropout."""
    return None


def set_rng_state(arrays):
    """Never called: rng_state() gives nothing to restore."""
