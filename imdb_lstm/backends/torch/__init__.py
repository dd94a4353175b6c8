"""torch: the default backend."""
import importlib
import os

from imdb_lstm.backends import framework_optimizer, take_a_zero_step
from imdb_lstm.backends.torch import fixes
from imdb_lstm.errors import LostProcess, PipelineError

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
    # torchrun's processes on one machine (LOCAL_WORLD_SIZE) share the threads: one count for a given count of them
    _torch().set_num_threads(max(1, THREADS // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))


def has_gpu():
    return _torch().cuda.is_available()


_on_gpu = False


def use_device(gpu):
    global _on_gpu
    if gpu:  # not on the CPU: a default device intercepts every torch call
        # cuBLAS's deterministic mode (deterministic() asks for it) needs a fixed workspace, set before its first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        _torch().set_default_device("cuda")
    _on_gpu = gpu


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


def mixed_precision(gpu):
    return _torch().autocast("cuda" if gpu else "cpu", dtype=_torch().bfloat16)


def set_rates(tlx, optimizer, weights, rates):
    real = framework_optimizer(optimizer, _torch().optim.Optimizer)
    if real is None:  # before the first step: create it, as the first step would
        take_a_zero_step(tlx, optimizer, weights)
        real = framework_optimizer(optimizer, _torch().optim.Optimizer)
    if len(real.param_groups) != len(weights):  # a group per weight, in order: the state's indices stay
        settings = {key: value for key, value in real.param_groups[0].items() if key != "params"}
        real.param_groups = [{**settings, "params": [weight]} for weight in weights]
    for group, rate in zip(real.param_groups, rates):
        group["lr"] = rate


_gradient_weight = 1.0


def start_process_group(comm):
    torch = _torch()
    distributed = importlib.import_module("torch.distributed")
    if _on_gpu:  # a GPU per process, numbered as the processes on the machine
        processes, gpus = int(os.environ["LOCAL_WORLD_SIZE"]), torch.cuda.device_count()
        if processes > gpus:
            raise PipelineError(f"{processes} processes on a GPU each, and this machine has {gpus}: lower "
                                "distributed.processes, or use device cpu and distributed.comm gloo")
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    distributed.init_process_group(comm)
    # every optimizer of this process, torch's own inside tlx's, sums the processes' gradients before it steps
    importlib.import_module("torch.optim.optimizer").register_optimizer_step_pre_hook(_sum_gradients)
    return distributed.get_rank(), distributed.get_world_size()


def _sum_gradients(optimizer, args, kwargs):
    gradients = [w.grad for group in optimizer.param_groups for w in group["params"] if w.grad is not None]
    flat = _torch().cat([g.reshape(-1) for g in gradients]) * _gradient_weight  # one message a step, not one a weight
    _all_reduce(flat)
    start = 0
    for gradient in gradients:
        gradient.copy_(flat[start:start + gradient.numel()].view_as(gradient))
        start += gradient.numel()


def set_gradient_weight(weight):
    global _gradient_weight
    _gradient_weight = weight


def all_sum(array):
    torch = _torch()
    tensor = torch.tensor(array, device="cuda" if _on_gpu else "cpu")
    _all_reduce(tensor)
    return tensor.cpu().numpy()


def _all_reduce(tensor):
    try:
        _torch().distributed.all_reduce(tensor)
    except RuntimeError as error:  # gloo's "Connection closed by peer", NCCL's errors: another process ended
        raise LostProcess from error


def rng_state():
    # on a GPU, dropout draws from the GPU's generator
    torch = _torch()
    return [torch.get_rng_state().numpy(), *([torch.cuda.get_rng_state().numpy()] if _on_gpu else [])]


def set_rng_state(arrays):
    torch = _torch()
    torch.set_rng_state(torch.from_numpy(arrays[0].copy()))
    if _on_gpu:
        torch.cuda.set_rng_state(torch.from_numpy(arrays[1].copy()))
