"""paddle (PaddlePaddle 3)."""
import importlib

import numpy as np

from imdb_lstm.backends import framework_optimizer, take_a_zero_step
from imdb_lstm.backends.paddle import fixes

PACKAGE, REQUIREMENTS = "paddle", "requirements.txt"

# The pinned kernels give the same bits on CPUs with AVX-512 (an AMD EPYC and an Intel Xeon with AMX),
# and others on an AMD EPYC with AVX2 only (tests/test_reproducible.py): some kernel that no pin here
# reaches picks its instruction set by CPU.
CROSS_CPU_FLAG = "avx512f"
KERNELS = {
    # paddle's bundled MKL (2019) gives a non-Intel CPU its generic path and an Intel one its
    # widest: type 5 makes it treat any AVX2 CPU as an Intel AVX2 one, and CBWR=AVX2 keeps Intel
    # CPUs with AVX-512 on that same path. Same kernels everywhere, and twice as fast on AMD.
    "MKL_DEBUG_CPU_TYPE": "5",
    "MKL_CBWR": "AVX2",
    # One thread for paddle's MKL (its default) and its OpenMP kernels: with OMP_NUM_THREADS
    # 2 to 8 a run gave other bits than with 1. One thread was also the faster on 2 cores.
    "FLAGS_paddle_num_threads": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    # Guards: paddle's oneDNN kernels stay off (its CPU default), and capped if anything enables them.
    "FLAGS_use_mkldnn": "0",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def _paddle():
    return importlib.import_module("paddle")  # not at import: KERNELS must be set first


def before_import():
    fixes.install_fluid_standin()
    fixes.truncate_at_two_sigma()


def after_import(tlx):
    fixes.set_train_recursively(tlx)
    fixes.remove_fluid_standin()
    fixes.pack_rnn_weights_eagerly(tlx)
    fixes.let_gradients_through_frozen_rnns(tlx)  # after the above, which sets the method it wraps
    fixes.make_rnn_zero_states(tlx)
    fixes.draw_he_xavier_eagerly(tlx)
    fixes.skip_zero_weight_decay(tlx)
    fixes.take_max_at_argmax(tlx)
    fixes.let_interrupts_out_of_filter_grads()


def pin_after_import():
    """The thread count is in KERNELS: paddle reads it at import."""


def has_gpu():
    return _paddle().device.cuda.device_count() > 0


def use_device(gpu):
    _paddle().set_device("gpu" if gpu else "cpu")


def deterministic():
    """tlx.set_seed seeds paddle; its CPU kernels are deterministic with the pins above."""


def set_trainable(weight, trainable):
    weight.stop_gradient = not trainable


def no_grad():
    return _paddle().no_grad()


def detach(tensor):
    return tensor.detach()


def adversarial_objective(loss_at, pushed_loss_at, x, push):
    if x.stop_gradient:  # a frozen embedding's output records no gradient: a copy that does stands in for it
        x = x.detach()
        x.stop_gradient = False
    x.retain_grads()
    # paddle.grad cannot take x's gradient alone (an LSTM's backward then fails: "Required tensor shall not
    # be nullptr"), so a whole backward pass takes it, and leaves the loss's gradients in the weights. tlx's
    # paddle step adds its backward's to those (it clears them after its update, not before): it is handed
    # the pushed loss alone, and the sum is the objective's gradient, in two backward passes, not three.
    loss_at(x).backward(retain_graph=True)  # the step's backward goes through the embedding again
    return pushed_loss_at(x + push(x.grad.detach(), x.detach()))


def _adam_state(optimizer):
    """paddle's Adam state as {"position/accumulator": tensor}, keyed by each weight's place in the step's
    list, as torch's is: paddle's own keys are weight names, which count up per process (embedding_1, ...),
    so a model built after another in one process has other names."""
    position = {weight.name: i for i, weight in enumerate(optimizer._parameter_list)}
    return {f"{position[name]}/{kind}": value
            for kind, by_name in optimizer._accumulators.items() for name, value in by_name.items()}


def optimizer_state(optimizer):
    optimizer = framework_optimizer(optimizer, _paddle().optimizer.Optimizer)
    if optimizer is None:
        return {}
    return {key: value.numpy() for key, value in _adam_state(optimizer).items()}


def load_optimizer_state(tlx, optimizer, weights, state):
    take_a_zero_step(tlx, optimizer, weights)
    optimizer = framework_optimizer(optimizer, _paddle().optimizer.Optimizer)
    names = [weight.name for weight in optimizer._parameter_list]
    # paddle makes its accumulators at the first update and takes their values from here by their names
    saved = {}
    for key, value in state.items():
        position, kind = key.split("/")
        saved[f"{names[int(position)]}_{kind}_0"] = _paddle().to_tensor(value)
    optimizer.set_state_dict(saved)


mixed_precision = None  # tlx's layers here are not checked in half precision: full precision everywhere
start_process_group = set_gradient_weight = all_sum = None  # one process: the process groups of torchrun are torch's


def set_rates(tlx, optimizer, weights, rates):
    real = framework_optimizer(optimizer, _paddle().optimizer.Optimizer)
    if real is None:  # before the first step: create it, as the first step would
        take_a_zero_step(tlx, optimizer, weights)
        real = framework_optimizer(optimizer, _paddle().optimizer.Optimizer)
    real.set_lr(1.0)  # each weight's rate is then its own multiplier of the optimizer's
    for weight, rate in zip(weights, rates):
        weight.optimize_attr["learning_rate"] = rate


def rng_state():
    arrays = []
    for state in _paddle().get_rng_state():  # a few numbers, then the engine's state as text bytes
        *numbers, engine = state.__getstate__()
        arrays += [np.array(numbers, dtype=np.int64), np.array(engine, dtype=np.uint8)]
    return arrays


def set_rng_state(arrays):
    kind = type(_paddle().get_rng_state()[0])
    states = []
    for numbers, engine in zip(arrays[::2], arrays[1::2]):
        state = kind.__new__(kind)
        state.__setstate__((*numbers.tolist(), engine.tolist()))
        states.append(state)
    _paddle().set_rng_state(states)
