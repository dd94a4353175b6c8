"""Fixes for TensorLayerX 0.5.8 on today's backends, applied from outside tlx.

tlx 0.5.8 (Feb 2023) was written for torch 1.10 and paddle 2.2. Each fix below is small and
says what breaks without it; tests/test_compat.py has a test per fix that fails without it.
`before_import` runs before the first `import tensorlayerx`, `after_import` right after.
Facts and measurements: ../shared/notes/tensorlayerx-0.5.8.md.
"""
import sys
import types


def before_import(backend):
    if backend == "torch":
        _skip_torchvision_box_ops()


def after_import(backend, tlx):
    if backend == "torch":
        _accept_remove_duplicate(tlx)
        _keep_rnn_train_method(tlx)
        _step_real_torch_optimizer(tlx)
    _set_train_recursively(tlx)


def _skip_torchvision_box_ops():
    """`import tensorlayerx` fails with "No module named torchvision": tlx.vision.ops.torch_ops
    imports it at load time, only for three box ops this project never uses, and PyPI's
    torchvision does not load beside the CPU torch build. Register that module without it."""
    name = "tensorlayerx.vision.ops.torch_ops"
    ops = types.ModuleType(name, "tlx's torchvision box ops, unavailable: torchvision is not installed")

    def needs_torchvision(*args, **kwargs):
        raise ImportError("tensorlayerx's box ops (box_area, box_iou, nms) need torchvision")

    ops.box_area = ops.box_iou = ops.nms = needs_torchvision
    ops.__all__ = ["box_area", "box_iou", "nms"]
    sys.modules[name] = ops


def _accept_remove_duplicate(tlx):
    """`net.parameters()` raises "unexpected keyword argument 'remove_duplicate'": tlx's Module
    overrides torch's `_named_members` with torch 1.10's signature; torch >= 1.13 passes the flag."""
    module = tlx.nn.Module
    named_members = module._named_members

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return named_members(self, get_members_fn, prefix=prefix, recurse=recurse)

    module._named_members = _named_members


def _keep_rnn_train_method(tlx):
    """`net.eval()` / `net.train()` raise "'bool' object is not callable": tlx's torch `rnnbase`
    stores its is_train flag as `self.train`, shadowing torch's `Module.train()`. Keep it as is_train."""
    rnnbase = tlx.ops.rnnbase
    init = rnnbase.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.is_train = self.__dict__.pop("train")

    rnnbase.__init__ = __init__


def _step_real_torch_optimizer(tlx):
    """Every training step fails with "adam() missing ... 'maximize'": tlx's torch optimizers call
    torch 1.10's functional `F.adam` signature. `gradient()` already builds and feeds the real
    torch.optim optimizer, so `apply_gradients` only has to step it."""
    import torch

    def apply_gradients(self, grads_and_vars=None, closure=None):
        if not self.init_optim:
            raise AttributeError("Can not apply gradients before zero_grad call.")
        optimizer = next(v for v in vars(self).values() if isinstance(v, torch.optim.Optimizer))
        return optimizer.step(closure)

    for name in ("Adadelta", "Adagrad", "Adam", "Adamax", "RMSprop", "SGD", "Momentum"):
        getattr(tlx.optimizers, name).apply_gradients = apply_gradients


def _set_train_recursively(tlx):
    """`net.set_eval()` leaves dropout on: tlx sets `is_train` on direct children only and never
    sets the backend's own `.training` flag, which torch's and paddle's dropout and RNN read."""

    def set_train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for layer in _sublayers(self):
            layer.is_train = mode
            layer.training = mode
        return self

    tlx.nn.Module.set_train = set_train


def _sublayers(module):
    return module.modules() if hasattr(module, "modules") else [module, *module.sublayers()]
