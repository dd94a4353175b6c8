"""torch: the default backend."""
import importlib

from imdb_lstm import compat
from imdb_lstm.backends import framework_optimizer, take_a_zero_step

PACKAGE, REQUIREMENTS = "torch", "requirements.txt"

KERNELS = {
    # oneDNN runs torch's CPU LSTM and picks AVX2, AVX-512 or AMX kernels by CPU.
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    # Guard: never let oneDNN compute f32 in bf16 or tf32, whatever a stray variable asks.
    "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT",
    # ATen's own vectorised kernels ("default", i.e. unvectorised, sums in another order).
    "ATEN_CPU_CAPABILITY": "avx2",
    # torch's MKL (the Linear layers' matmul) takes vendor-specific paths; COMPATIBLE is the one
    # MKL documents as giving the same results on Intel and non-Intel CPUs.
    "MKL_CBWR": "COMPATIBLE",
}
# torch's oneDNN LSTM splits its work by thread count: 1 thread gives other bits than 2, and 2 to 64
# all agree (measured). Two threads everywhere: the same bits on a 1-core laptop and a 64-core server.
THREADS = 2


def _torch():
    return importlib.import_module("torch")  # not at import: KERNELS must be set first


def before_import():
    compat._skip_torchvision_box_ops()


def after_import(tlx):
    compat._set_train_recursively(tlx)
    compat._accept_remove_duplicate(tlx)
    compat._keep_rnn_train_method(tlx)
    compat._step_real_torch_optimizer(tlx)
    compat._let_interrupts_out_of_convert_to_numpy(tlx)


def pin_threads():
    _torch().set_num_threads(THREADS)


def has_gpu():
    return _torch().cuda.is_available()


def use_device(gpu):
    if gpu:  # not on the CPU: a default device intercepts every torch call
        _torch().set_default_device("cuda")


def deterministic():
    _torch().use_deterministic_algorithms(True, warn_only=True)


def set_trainable(weight, trainable):
    weight.requires_grad_(trainable)


def no_grad():
    return _torch().no_grad()


def adversarial_objective(loss_at, pushed_loss_at, x, push):
    # a frozen embedding's output records no gradient: a copy that does stands in for it
    x = x if x.requires_grad else x.detach().requires_grad_()
    loss = loss_at(x)
    (gradient,) = _torch().autograd.grad(loss, x, retain_graph=True)  # the step's backward still needs the graph
    return loss + pushed_loss_at(x + push(gradient, x.detach()))


def optimizer_state(optimizer):
    optimizer = framework_optimizer(optimizer, _torch().optim.Optimizer)
    if optimizer is None:
        return {}
    # copies: numpy() of a CPU tensor is a view, which the next step changes
    return {f"{i}/{key}": value.detach().cpu().numpy().copy() for i, state in optimizer.state_dict()["state"].items()
            for key, value in state.items()}


def load_optimizer_state(tlx, optimizer, weights, state):
    take_a_zero_step(tlx, optimizer, weights)
    optimizer = framework_optimizer(optimizer, _torch().optim.Optimizer)
    saved = {}
    for name, value in state.items():
        i, key = name.split("/")
        saved.setdefault(int(i), {})[key] = _torch().from_numpy(value.copy())
    optimizer.load_state_dict({"state": saved, "param_groups": optimizer.state_dict()["param_groups"]})


def rng_state():
    return [_torch().get_rng_state().numpy()]


def set_rng_state(arrays):
    _torch().set_rng_state(_torch().from_numpy(arrays[0].copy()))
