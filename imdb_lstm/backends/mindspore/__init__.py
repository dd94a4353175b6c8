"""mindspore (MindSpore 2, PyNative mode): an optional install, requirements-mindspore.txt."""
import contextlib
import importlib
import os
import tempfile

import numpy as np

from imdb_lstm.backends.mindspore import fixes
from imdb_lstm.errors import PipelineError

PACKAGE, REQUIREMENTS = "mindspore", "requirements-mindspore.txt"

# The pinned kernels give the same bits on every CPU tried: AMD EPYCs with and without AVX-512, and an
# Intel Xeon with AVX-512 and AMX (tests/test_reproducible.py).
CROSS_CPU_FLAG = "avx2"
KERNELS = {
    # MindSpore's CPU LSTM and matrix products run on oneDNN, which picks AVX2, AVX-512 or AMX
    # kernels by CPU: capped at AVX2, as for torch.
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def _ms():
    return importlib.import_module("mindspore")  # not at import: KERNELS must be set first


def before_import():
    os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ log: errors only (its deprecation notices are not ours)
    # A failed graph's analysis goes to rank_0/om/ under the working directory, an untracked folder in the
    # checkout (the compat tests' expected failures left one in CI's clone): keep it in the temp folder.
    os.environ.setdefault("MS_OM_PATH", os.path.join(tempfile.gettempdir(), "mindspore"))
    # Ops launched synchronously: PyNative's asynchronous launch stalled about 1.3 s on every second
    # or third step here (a plain MindSpore step took 90 or 1,400 ms; launched in order, 55-100 ms).
    _ms().runtime.launch_blocking()
    fixes.survive_first_mindspore_op()
    fixes.restore_checkparam_names()
    fixes.alias_grad_base()


def after_import(tlx):
    fixes.give_initializers_a_plain_seed(tlx)
    fixes.gather_embeddings_densely(tlx)
    fixes.return_transposes(tlx)
    fixes.run_mindspore_lstm_fused(tlx)
    fixes.one_forward_pass_per_step(tlx)
    fixes.set_train_mode_everywhere(tlx)
    fixes.seed_each_dropout_call(tlx)


def pin_after_import():
    """Nothing to pin: MindSpore's CPU kernels gave the same bits with 1, 2, 8 and 25 threads (its
    default), tests/test_reproducible.py."""


def has_gpu():
    return _ms().get_context("device_target") == "GPU"  # MindSpore's GPU build; the CPU build says "CPU"


def use_device(gpu):
    """MindSpore fixes its device at its first op (before_import runs one), by the build installed."""
    if has_gpu() and not gpu:
        raise PipelineError("mindspore's GPU build runs on the GPU only: use device auto or gpu")


def deterministic():
    """MindSpore takes this once per process (a second call raises), and a process may seed again."""
    if not importlib.import_module("mindspore.device_manager").DeviceManagerConf.get_instance() \
            .is_deterministic_configured():
        _ms().set_deterministic(True)


def set_trainable(weight, trainable):
    """Nothing to switch: a step takes gradients only for the weights it lists (training.make_step
    leaves a frozen embedding out). Switching requires_grad would also move the weight in tlx's
    all_weights, which lists trainable weights first, and so in the saved file."""


def no_grad():
    return contextlib.nullcontext()  # PyNative records a graph only inside value_and_grad


def detach(tensor):
    return _ms().ops.stop_gradient(tensor)


# Adversarial training takes a gradient inside the step's own; tlx's mindspore step differentiates the
# whole loss function with GradOperation, which does not nest so: params.py refuses `adversarial` here.
adversarial_objective = None


def _adam_state(optimizer):
    """MindSpore's Adam inside a tlx optimizer (tlx creates it in its first step) lists the weights it
    trains among its own parameters; the rest, in a fixed order, is its state (moments, step, powers)."""
    adam = getattr(optimizer, "optimizer_adam", None)
    if adam is None:
        return []
    weights = {id(weight) for weight in adam.parameters}
    return [parameter for parameter in adam.get_parameters() if id(parameter) not in weights]


def optimizer_state(optimizer):
    # copies: asnumpy() is a view of the parameter, which the next step changes
    return {str(i): parameter.asnumpy().copy() for i, parameter in enumerate(_adam_state(optimizer))}


def load_optimizer_state(tlx, optimizer, weights, state):
    if not _adam_state(optimizer):  # a step with zero gradients creates it and moves no weight
        optimizer.apply_gradients([(_ms().ops.zeros_like(w), w) for w in weights])
    for i, parameter in enumerate(_adam_state(optimizer)):
        # in place: set_data() would give the parameter new memory, and Adam's kernels keep the old
        _ms().ops.assign(parameter, _ms().Tensor(state[str(i)].reshape(parameter.shape)))


# mindspore.common.seed's counter for ops.dropout, which fixes.seed_each_dropout_call makes every dropout use
DROPOUT_COUNTER = ("dropout", 0)


mixed_precision = None  # tlx's layers here are not checked in half precision: full precision everywhere
start_process_group = set_gradient_weight = all_sum = None  # one process: the process groups of torchrun are torch's


set_rates = None  # tlx's optimizer holds one learning rate, fixed when it is made


def rng_state():
    counters = importlib.import_module("mindspore.common.seed")._KERNEL_SEED
    return [np.array([counters.get(DROPOUT_COUNTER, 0)], dtype=np.int64)]


def set_rng_state(arrays):
    importlib.import_module("mindspore.common.seed")._KERNEL_SEED[DROPOUT_COUNTER] = int(arrays[0][0])
