"""Everything that differs between TensorLayerX's backends: one package per backend (NAME/__init__.py, with
the same few names, the interface below; NAME/fixes.py, its TensorLayerX fixes), and `get(name)`, the one
dispatch, which refuses an unknown name and says what to install for a known one that is missing. Adding a
backend is a new package here and its name in NAMES (CONTRIBUTING.md, "Adding a backend").

Each module defines:
  PACKAGE, REQUIREMENTS       the framework's import name; the file that installs it
  KERNELS                     environment variables that pin its CPU kernels (imdb_lstm/kernels.py)
  CROSS_CPU_FLAG              the x86-64 CPU feature on which the pinned kernels give the same bits on every
                              CPU model that has it (verified on an AMD and an Intel CPU); None: this CPU
                              model only (imdb_lstm/kernels.py: same_bits_as_other_cpus)
  before_import(), after_import(tlx), pin_after_import()
  has_gpu(), use_device(gpu)  where new tensors live
  deterministic()             ask for run-to-run deterministic kernels (after tlx.set_seed)
  set_trainable(weight, on), no_grad()
  detach(tensor)              the tensor as a constant: no gradient flows back through it
  adversarial_objective(loss_at, pushed_loss_at, x, push)
                              what a training step descends to descend loss_at(x) + pushed_loss_at(x + push(g, x)),
                              g being loss_at's gradient at x and push given constants (training.py's
                              AdversarialLoss; None where it cannot be done)
  optimizer_state(optimizer), load_optimizer_state(tlx, optimizer, weights, state)
                              a tlx optimizer's Adam state as {name: array} ({} before its first step)
  mixed_precision(gpu)         a context in which matrix products may run in bfloat16 on the GPU (or the CPU,
                              for tests; None: full precision only)
  set_rates(tlx, optimizer, weights, rates)
                              give each of a tlx optimizer's weights its own learning rate from its next step
                              on (schedules, layer-wise rates; None where the optimizer holds one fixed rate)
  rng_state(), set_rng_state(arrays)   the generator dropout draws from, as arrays (None: cannot be saved)
  start_process_group(comm)   join the process group torchrun's environment names, over `comm` (gloo or nccl),
                              so that each optimizer step first sums the processes' gradients, each times its
                              weight; returns (rank, processes) (None: one process only; imdb_lstm/distributed.py)
  set_gradient_weight(weight), all_sum(array)
                              what this process's gradients count in the next step's sum; a numpy array summed
                              over the processes
"""
import importlib
import importlib.util

from imdb_lstm.errors import PipelineError, quote

NAMES = ("torch", "paddle", "tensorflow", "mindspore")
INTERFACE = ("PACKAGE", "REQUIREMENTS", "KERNELS", "CROSS_CPU_FLAG", "before_import", "after_import",
             "pin_after_import", "has_gpu", "use_device", "deterministic", "set_trainable", "no_grad",
             "detach", "adversarial_objective", "optimizer_state", "load_optimizer_state", "mixed_precision",
             "set_rates", "rng_state", "set_rng_state", "start_process_group", "set_gradient_weight", "all_sum")


def get(name):
    """The module of backend `name`; a PipelineError for an unknown or uninstalled one."""
    if name not in NAMES:
        raise PipelineError(f"unknown backend {quote(name)}: use one of {', '.join(NAMES)}")
    entry = module(name)
    if not _installed(entry):
        raise PipelineError(f"backend {name} is not installed: pip install -r {entry.REQUIREMENTS}")
    return entry


def trains_adversarially(name):
    """Whether backend `name` has adversarial_objective (params.py checks this before any work)."""
    return module(name).adversarial_objective is not None


def schedules_rates(name):
    """Whether backend `name` has set_rates (params.py checks this before any work)."""
    return module(name).set_rates is not None


def trains_in_processes(name):
    """Whether backend `name` has start_process_group (params.py checks this before any work)."""
    return module(name).start_process_group is not None


def installed():
    """The backends whose framework is installed here."""
    return [name for name in NAMES if _installed(module(name))]


def module(name):
    """The module of backend `name` in NAMES, installed or not (it imports no framework)."""
    return importlib.import_module(f"imdb_lstm.backends.{name}")


def _installed(entry):
    return importlib.util.find_spec(entry.PACKAGE) is not None


def framework_optimizer(optimizer, kind):
    """The framework's optimizer object (of class `kind`) inside a tlx optimizer, or None while there is
    none (tlx creates torch's and paddle's in their first step)."""
    return next((v for v in vars(optimizer).values() if isinstance(v, kind)), None)


def take_a_zero_step(tlx, optimizer, weights):
    """tlx creates torch's and paddle's optimizer in its first gradient(): a loss of 0 creates it and gives
    every weight a gradient of +0, what a finished step leaves (torch clears it before the next one)."""
    optimizer.gradient(tlx.add_n([tlx.reduce_sum(w * 0) for w in weights]), weights)
