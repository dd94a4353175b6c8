"""torch: the default backend."""
import importlib

from imdb_lstm.backends import framework_optimizer, take_a_zero_step
from imdb_lstm.backends.torch import fixes

PACKAGE, REQUIREMENTS = "torch", "requirements.txt"

# The same bits on this CPU model only: oneDNN and MKL tune their kernels to the CPU beyond its
# instruction set, and no pin found both holds across vendors and keeps torch fast.
CROSS_CPU_FLAG = None
KERNELS = {
    # Guard: f32 math in oneDNN, whatever a user's environment asks (bf16 on a CPU with AMX sums otherwise).
    "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT",
}
# oneDNN's LSTM sums in another order at 1 thread than at 2: one count everywhere, whatever the core count.
THREADS = 2


def _torch():
    return importlib.import_module("torch")  # not at import: KERNELS must be set first


def before_import():
    fixes.skip_torchvision_box_ops()


def after_import(tlx):
    fixes.set_train_recursively(tlx)
    fixes.accept_remove_duplicate(tlx)
    fixes.keep_rnn_train_method(tlx)
    fixes.step_real_torch_optimizer(tlx)
    fixes.let_interrupts_out_of_convert_to_numpy(tlx)


def pin_after_import():
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


def detach(tensor):
    return tensor.detach()


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
