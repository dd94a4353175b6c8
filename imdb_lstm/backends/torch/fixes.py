"""TensorLayerX 0.5.8's fixes for torch 2 (tlx was written for torch 1.10).

Each fix is small and says what breaks without it; tests/test_compat.py shows, for each, code that fails
without it (tests/compat_fixes.py). The backend's module (__init__.py) applies them, before the first
`import tensorlayerx` (`before_import`) or right after (`after_import`).
"""
import sys
import types

from imdb_lstm.backends.shared_fixes import OPTIMIZERS, set_train_recursively  # noqa: F401 (one is applied from here)


def skip_torchvision_box_ops():
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


def accept_remove_duplicate(tlx):
    """`net.parameters()` raises "unexpected keyword argument 'remove_duplicate'": tlx's Module
    overrides torch's `_named_members` with torch 1.10's signature; torch >= 1.13 passes the flag."""
    module = tlx.nn.Module
    named_members = module._named_members

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return named_members(self, get_members_fn, prefix=prefix, recurse=recurse)

    module._named_members = _named_members


def keep_rnn_train_method(tlx):
    """`net.eval()` / `net.train()` raise "'bool' object is not callable": tlx's torch `rnnbase`
    stores its is_train flag as `self.train`, shadowing torch's `Module.train()`. Keep it as is_train."""
    rnnbase = tlx.ops.rnnbase
    init = rnnbase.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.is_train = self.__dict__.pop("train")

    rnnbase.__init__ = __init__


def step_real_torch_optimizer(tlx):
    """Every training step fails with "adam() missing ... 'maximize'": tlx's torch optimizers call
    torch 1.10's functional `F.adam` signature. `gradient()` already builds and feeds the real
    torch.optim optimizer, so `apply_gradients` only has to step it."""
    import torch

    def apply_gradients(self, grads_and_vars=None, closure=None):
        if not self.init_optim:
            raise AttributeError("Can not apply gradients before zero_grad call.")
        optimizer = next(v for v in vars(self).values() if isinstance(v, torch.optim.Optimizer))
        return optimizer.step(closure)

    for name in OPTIMIZERS:
        getattr(tlx.optimizers, name).apply_gradients = apply_gradients


def let_interrupts_out_of_convert_to_numpy(tlx):
    """A Ctrl-C or SIGTERM during training is sometimes lost and training runs on to its last epoch:
    tlx's torch `convert_to_numpy` tries `value.numpy()` under a bare `except:`, which also catches
    the KeyboardInterrupt a signal raises there (2 of 600 interrupts of a tiny training, in CI once).
    Same result, with nothing to catch; tlx's modules each hold the function, so replace it in all."""
    import torch

    original = tlx.convert_to_numpy

    def convert_to_numpy(value):
        return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else original(value)

    for module in [m for name, m in sys.modules.items() if name.split(".")[0] == "tensorlayerx"]:
        if getattr(module, "convert_to_numpy", None) is original:
            module.convert_to_numpy = convert_to_numpy
