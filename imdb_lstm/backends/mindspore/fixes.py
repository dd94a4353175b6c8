"""TensorLayerX 0.5.8's fixes for mindspore 2.10.

Each fix is small and says what breaks without it; tests/test_compat.py shows, for each, code that fails
without it (tests/compat_fixes.py). The backend's module (__init__.py) applies them, before the first
`import tensorlayerx` (`before_import`) or right after (`after_import`).
"""
import contextlib
import sys
import types


def survive_first_mindspore_op():
    """With numpy 2, MindSpore's first transpose (and others of its C++ "pyboost" ops) of a process
    fails: "ImportError: numpy.core.multiarray failed to import", then "SystemError: pyboost_transpose
    returned a result with an exception set". MindSpore's core loads numpy 1's C API lazily, on that
    first op, and the load fails once; every later op works. Spend the failure on a throwaway op."""
    import mindspore
    import numpy as np

    with open("/dev/null", "w") as null, contextlib.redirect_stderr(null):
        try:
            mindspore.ops.transpose(mindspore.Tensor(np.zeros((1, 2), np.float32)), (1, 0))
        except SystemError:
            pass


def restore_checkparam_names():
    """`import tensorlayerx` fails with "cannot import name 'Rel' from 'mindspore._checkparam'": MindSpore
    2 flattened the Rel and Validator classes of 1.8 into module-level names. Give them back."""
    from mindspore import _checkparam

    relations = ("EQ", "NE", "LT", "LE", "GT", "GE", "INC_NEITHER", "INC_LEFT", "INC_RIGHT", "INC_BOTH", "IN", "NOT_IN")
    _checkparam.Rel = types.SimpleNamespace(**{name: getattr(_checkparam, name) for name in relations})
    _checkparam.Validator = _checkparam  # the same check_* functions, now module-level


def alias_grad_base():
    """`import tensorlayerx` fails with "No module named 'mindspore.ops._grad'": tlx imports grad_base
    from there; MindSpore 2 keeps it in mindspore.ops._grad_experimental."""
    from mindspore.ops._grad_experimental import grad_base

    package = types.ModuleType("mindspore.ops._grad")
    package.__path__, package.grad_base = [], grad_base
    sys.modules["mindspore.ops._grad"] = package
    sys.modules["mindspore.ops._grad.grad_base"] = grad_base


def give_initializers_a_plain_seed(tlx):
    """Building an Embedding (or any weight tlx draws with its own initializers) fails with "The only
    supported seed types are: None, int, float, str, bytes, and bytearray": MindSpore 2's
    Initializer.seed became a (seed, seed2) property, and tlx's subclasses pass it to random.seed."""
    from mindspore.common.initializer import Initializer
    from tensorlayerx.backend.ops import mindspore_backend

    plain = property(lambda self: self.__dict__.get("_tlx_seed"),
                     lambda self, value: self.__dict__.__setitem__("_tlx_seed", value))
    for cls in vars(mindspore_backend).values():
        if isinstance(cls, type) and issubclass(cls, Initializer) and cls.__module__ == mindspore_backend.__name__:
            cls.seed = plain


def gather_embeddings_densely(tlx):
    """The first Adam step fails with "var_shape ... must be equal to [vocab, dim]": tlx's embedding
    lookup (P.EmbeddingLookup) has a sparse gradient, of which MindSpore 2 hands back only the rows'
    values. ops.gather looks up the same rows with a dense gradient."""
    import mindspore

    class DenseEmbeddingLookup(mindspore.nn.Cell):
        def __init__(self, max_norm=0):
            super().__init__()

        def construct(self, params, ids, *args, **kwargs):
            return mindspore.ops.gather(params, ids, 0)

    tlx.EmbeddingLookup = DenseEmbeddingLookup  # tlx's Embedding layers look it up here when built


def return_transposes(tlx):
    """`tlx.transpose` prints the transposed tensor and returns None (its last line is `print(outputs)`), so
    the tied softmax's `tlx.matmul(states, tlx.transpose(embeddings))` fails with "Failed calling MatMulExt
    with ... other=None". Return it (reversing the axes where no `perm` is given, as the other backends do)."""
    import mindspore

    def transpose(a, perm=None, conjugate=False):
        transposed = mindspore.ops.transpose(a, tuple(reversed(range(a.ndim))) if perm is None else tuple(perm))
        return mindspore.ops.conj(transposed) if conjugate else transposed

    tlx.transpose = tlx.ops.transpose = transpose


def run_mindspore_lstm_fused(tlx):
    """tlx's LSTM runs each time step as Python-driven ops: 1.19 s a training step of the default model,
    against 85 ms with this fix. MindSpore's own nn.LSTM runs on its fused CPU kernel through
    _DynamicLSTMCPUGPU, whose call is the one tlx makes; use it for each layer and direction."""
    from mindspore.nn.layer.rnns import _DynamicLSTMCPUGPU
    from tensorlayerx.backend.ops import mindspore_nn

    rnnbase = mindspore_nn.rnnbase
    init = rnnbase.__init__

    def __init__(self, mode, *args, **kwargs):
        init(self, mode, *args, **kwargs)
        if mode == "LSTM":
            self.rnn = _DynamicLSTMCPUGPU()

    rnnbase.__init__ = __init__


def one_forward_pass_per_step(tlx):
    """Each mindspore training step runs the model forward twice: tlx's TrainOneStepWithMS computes the
    loss, then its gradient in a second pass. Twice the time; dropout draws another mask for the
    gradient than for the loss it reports; a loss that counts correct predictions counts each batch
    twice. MindSpore's value_and_grad gives both from one pass."""
    import mindspore
    from tensorlayerx.model import utils

    def __init__(self, net_with_loss, optimizer, train_weights):
        self.net_with_loss, self.optimizer, self.train_weights = net_with_loss, optimizer, train_weights
        self.loss_and_grads = mindspore.value_and_grad(net_with_loss, None, mindspore.ParameterTuple(train_weights))

    def __call__(self, data, label, *args, **kwargs):
        loss, grads = self.loss_and_grads(data, label, *args, **kwargs)
        self.optimizer.apply_gradients(zip(grads, self.train_weights))
        return loss.asnumpy()

    utils.TrainOneStepWithMS.__init__ = __init__
    utils.TrainOneStepWithMS.__call__ = __call__


def set_train_mode_everywhere(tlx):
    """`net.set_train()` after `net.set_eval()` leaves dropout off on mindspore: tlx's set_eval turns
    each layer's is_train flag off, which tlx's Dropout reads, and set_train never turns it back on."""
    module = tlx.nn.Module

    def set_train_mode(self, mode):
        for _, cell in self.cells_and_names():  # self and every sublayer
            cell.is_train = mode
        self._phase = "train" if mode else "predict"
        self.add_flags_recursive(training=mode)  # MindSpore's own switch (its dropout between LSTM layers)
        return self

    module.set_train = lambda self: set_train_mode(self, True)
    module.set_eval = lambda self: set_train_mode(self, False)


def seed_each_dropout_call(tlx):
    """Dropout on mindspore is not reproducible, and cannot be resumed: tlx's Dropout builds MindSpore's
    kernel without seeds, so MindSpore seeds it from the system's entropy (the same seed gave other
    losses on each run), and the dropout between LSTM layers keeps its generator inside its kernel,
    which nothing can save. ops.dropout seeds each call from the global seed and a counter that
    mindspore.common.seed keeps in Python (backends/mindspore.py saves it with a checkpoint)."""
    import mindspore
    from tensorlayerx.backend.ops import mindspore_nn

    class SeededDropout(mindspore.nn.Cell):
        def __init__(self, p, seed=0):
            super().__init__()
            self.p = p

        def construct(self, inputs):
            return mindspore.ops.dropout(inputs, self.p) if self.training else inputs

    tlx.ops.Dropout = SeededDropout  # tlx's Dropout layer builds its kernel from here
    rnnbase = mindspore_nn.rnnbase
    init = rnnbase.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.dropout_op = SeededDropout(self.dropout)

    rnnbase.__init__ = __init__
