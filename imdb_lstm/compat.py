"""Fixes for TensorLayerX 0.5.8 on today's backends, applied from outside tlx.

tlx 0.5.8 (Feb 2023) was written for torch 1.10 and paddle 2.2. Each fix below is small and
says what breaks without it; tests/test_compat.py has a test per fix that fails without it.
Each backend's module in imdb_lstm/backends/ applies its fixes, before the first `import tensorlayerx`
(`before_import`) or right after (`after_import`).
"""
import contextlib
import math
import sys
import types

OPTIMIZERS = ("Adadelta", "Adagrad", "Adam", "Adamax", "RMSprop", "SGD", "Momentum")  # tlx's working ones


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

    for name in OPTIMIZERS:
        getattr(tlx.optimizers, name).apply_gradients = apply_gradients


def _let_interrupts_out_of_convert_to_numpy(tlx):
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


def _set_train_recursively(tlx):
    """`net.set_eval()` leaves dropout on (torch, paddle): tlx sets `is_train` on direct children only
    and never sets the backend's own `.training` flag, which torch's and paddle's dropout and RNN kernels read."""

    def set_train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for layer in self.modules():  # self and every sublayer, on torch and paddle
            layer.is_train = mode
        # The backend's own switch sets `.training` everywhere (and paddle's global tracer mode).
        self.train() if mode else self.eval()
        return self

    tlx.nn.Module.set_train = set_train
    tlx.nn.Module.set_eval = lambda self: set_train(self, False)


# --- paddle ---


def _install_fluid_standin():
    """`import tensorlayerx` fails with "No module named 'paddle.fluid'" (removed in paddle 2.6).
    Stand in a `paddle.fluid` tree holding each name tlx imports, from its paddle 3 home."""
    import paddle
    import paddle.distributed.parallel_helper as parallel_helper
    from paddle import base
    from paddle.nn import initializer as init
    from paddle.utils import layers_utils

    tree = {
        "paddle.fluid": dict(framework=base.framework, core=base.core, unique_name=base.unique_name,
                             data_feeder=base.data_feeder, program_guard=base.framework.program_guard,
                             default_startup_program=base.framework.default_startup_program),
        "paddle.fluid.framework": base.framework,
        "paddle.fluid.core": base.core,
        "paddle.fluid.data_feeder": base.data_feeder,
        "paddle.fluid.dygraph": dict(Layer=paddle.nn.Layer, LayerList=paddle.nn.LayerList,
                                     parallel_helper=parallel_helper),
        # program_desc_tracing_guard(enable) is gone; nullcontext(enable) is the same no-op guard.
        "paddle.fluid.dygraph.base": dict(param_guard=base.dygraph.base.param_guard,
                                          program_desc_tracing_guard=contextlib.nullcontext),
        "paddle.fluid.initializer": dict(ConstantInitializer=init.constant.ConstantInitializer,
                                         UniformInitializer=init.uniform.UniformInitializer,
                                         NormalInitializer=init.normal.NormalInitializer,
                                         TruncatedNormalInitializer=init.normal.TruncatedNormalInitializer,
                                         MSRAInitializer=init.kaiming.MSRAInitializer,
                                         XavierInitializer=init.xavier.XavierInitializer),
        "paddle.fluid.layers": {},
        "paddle.fluid.layers.utils": layers_utils,
    }
    for name, content in tree.items():  # parents come before their children
        module = content if isinstance(content, types.ModuleType) else types.ModuleType(name)
        if isinstance(content, dict):
            vars(module).update(content)
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, module)


def _truncate_at_two_sigma():
    """tlx.nn.Linear's default truncated_normal(stddev=0.02) is not truncated at all: fluid's
    initializer cut at mean ± 2 std (as TensorFlow's truncated_normal does), paddle 3's at ± 2.0
    absolute. (tlx's torch Linear draws its own way: values up to 0.054 at 300 × 300, measured.)"""
    from paddle.nn.initializer.normal import TruncatedNormalInitializer

    class TruncatedNormal2Sigma(TruncatedNormalInitializer):
        def __init__(self, loc=0.0, scale=1.0, seed=0):
            super().__init__(loc, scale, seed, a=loc - 2 * scale, b=loc + 2 * scale)

    sys.modules["paddle.fluid.initializer"].TruncatedNormalInitializer = TruncatedNormal2Sigma


def _remove_fluid_standin():
    """Without this the partial stand-in stays importable as `paddle.fluid`, and other code that
    looks for it to pick a paddle 2 code path fails later on a missing name. tlx keeps its references."""
    import paddle

    for name in [n for n in sys.modules if n == "paddle.fluid" or n.startswith("paddle.fluid.")]:
        del sys.modules[name]
    del paddle.fluid


def _pack_rnn_weights_eagerly(tlx):
    """Building any tlx LSTM fails with "no kernels ... coalesce_tensor" (tlx packs its weights with a
    static-graph op), and running one fails in paddle 2.2's `_C_ops.rnn` signature. Hand paddle 3's
    `RNNBase._cudnn_impl` the weights unpacked, in tlx's layout: every (w_ih, w_hh) per layer and
    direction, then every (b_ih, b_hh). Gradients then reach tlx's own parameters."""
    import paddle

    rnnbase = tlx.ops.rnnbase

    def flatten_parameters(self):
        n = self.num_layers * self.bidirect
        self._all_weights = [w for k in range(n) for w in (self.w_ih[k], self.w_hh[k])]
        if self.bias:
            self._all_weights += [b for k in range(n) for b in (self.b_ih[k], self.b_hh[k])]
        self._dropout_state = self.create_variable(dtype=paddle.base.core.VarDesc.VarType.UINT8)
        self.num_directions = self.bidirect  # the name paddle 3's _cudnn_impl reads

    rnnbase.flatten_parameters = flatten_parameters
    rnnbase._cudnn_impl = paddle.nn.layer.rnn.RNNBase._cudnn_impl


def _let_gradients_through_frozen_rnns(tlx):
    """An adversarial step through a frozen LSTM (lm.use's first epochs) fails in its backward with
    "Required tensor shall not be nullptr" (RnnGradNode): paddle 3's rnn backward cannot give its input a
    gradient without giving every weight one. Where the input needs a gradient, a frozen weight enters
    as a view of itself that takes one, which nothing reads: the weight itself stays as it was."""
    rnnbase = tlx.ops.rnnbase
    cudnn_impl = rnnbase._cudnn_impl

    def takes_gradient(weight):
        if not weight.stop_gradient:
            return weight
        view = weight.detach()
        view.stop_gradient = False
        return view

    def _cudnn_impl(self, inputs, initial_states, sequence_length):
        weights = self._all_weights
        if inputs.stop_gradient or not any(w.stop_gradient for w in weights):
            return cudnn_impl(self, inputs, initial_states, sequence_length)
        self._all_weights = [takes_gradient(w) for w in weights]
        try:
            return cudnn_impl(self, inputs, initial_states, sequence_length)
        finally:
            self._all_weights = weights

    rnnbase._cudnn_impl = _cudnn_impl


def _make_rnn_zero_states(tlx):
    """Calling a tlx LSTM without initial states fails: tlx builds the zeros with
    `paddle.fluid.layers.fill_constant_batch_size_like`, removed in paddle 2.6."""
    import paddle

    rnnbase = tlx.ops.rnnbase
    forward = rnnbase.forward

    def forward_from_zeros(self, inputs, initial_states=None):
        if initial_states is None:
            batch_size = inputs.shape[1 if self.time_major else 0]
            shape = [self.num_layers * self.bidirect, batch_size, self.hidden_size]
            zeros = [paddle.zeros(shape, inputs.dtype) for _ in range(self.state_components)]
            initial_states = tuple(zeros) if self.state_components > 1 else zeros[0]
        return forward(self, inputs, initial_states)

    rnnbase.forward = forward_from_zeros


def _draw_he_xavier_eagerly(tlx):
    """`he_normal`, `he_uniform`, `xavier_normal`, `xavier_uniform` (also as W_init='he_normal' ...)
    fail with "no kernels ... gaussian_random": tlx appends static-graph ops. Same formulas, drawn
    with paddle.nn.initializer; tlx's initializer classes look them up in tlx.ops, users in tlx."""
    from paddle.nn.initializer import Normal, Uniform
    from tensorlayerx.backend.ops.paddle_backend import _compute_fans, calculate_gain

    def he_std(var, a=0, mode="fan_in", nonlinearity="leaky_relu", **_):
        fan_in, fan_out = _compute_fans(var)
        return calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)

    def xavier_std(var, gain=1.0, **_):
        fan_in, fan_out = _compute_fans(var)
        return gain * math.sqrt(2.0 / (fan_in + fan_out))

    def normal(std):
        return lambda var, block=None, **kw: Normal(0.0, std(var, **kw))(var, block)

    def uniform(std):
        def init(var, block=None, **kw):
            limit = math.sqrt(3) * std(var, **kw)
            return Uniform(-limit, limit)(var, block)
        return init

    for module in (tlx, tlx.ops):
        module.he_normal, module.he_uniform = normal(he_std), uniform(he_std)
        module.xavier_normal, module.xavier_uniform = normal(xavier_std), uniform(xavier_std)


def _take_max_at_argmax(tlx):
    """A training step of a model with max pooling takes 60x as long on paddle: paddle 3.3's CPU gradient
    of a max over one axis (tlx.reduce_max) took 17.9 s for one batch of BiLSTM-128 states (64 x 230 x 256),
    whose forward took 7 ms. The values taken at the argmax are the same, and so is their gradient
    (paddle's max gives it to every tied element, this to the first of them, which LSTM states do not
    have), in 20 ms forward and backward."""
    import paddle

    def reduce_max(input_tensor, axis=None, keepdims=False):
        if not isinstance(axis, int) or input_tensor.stop_gradient:
            return paddle.max(input_tensor, axis, keepdim=keepdims)
        taken = paddle.take_along_axis(input_tensor, paddle.argmax(input_tensor, axis=axis, keepdim=True), axis)
        return taken if keepdims else paddle.squeeze(taken, axis)

    for module in (tlx, tlx.ops):
        module.reduce_max = reduce_max


def _skip_zero_weight_decay(tlx):
    """Every step of tlx's paddle optimizers decays each weight by 0: they pass weight_decay=0.0,
    which paddle turns into an L2Decay(0.0) that costs a scale and an add per parameter (about
    5 % of a training step of this model). Pass paddle's own default, None, instead."""
    for name in OPTIMIZERS:
        optimizer = getattr(tlx.optimizers, name)
        init = optimizer.__init__

        def __init__(self, *args, init=init, **kwargs):
            init(self, *args, **kwargs)
            self.weight_decay = self.weight_decay or None

        optimizer.__init__ = __init__


def _let_interrupts_out_of_filter_grads():
    """A Ctrl-C or SIGTERM can be lost in every step of tlx's paddle optimizers: `filter_grads`
    unzips the gradients under a bare `except:`, which also catches a signal's KeyboardInterrupt."""
    from tensorlayerx.optimizers import paddle_optimizers

    def filter_grads(grads_and_vars, weights):
        unzipped = list(zip(*grads_and_vars))  # [params, grads], or [] when there are none
        params, grads = unzipped or ([], [])
        return params, grads, len(grads) == len(weights)

    paddle_optimizers.filter_grads = filter_grads


def _run_lstm_as_compiled_scans(tlx):
    """tensorflow: tlx's LSTM (`ops.rnnbase`) is wrong when bidirectional, and slow. Its backward
    direction reverses each time step's batch (and back) instead of the time axis, so it reads the
    reviews forwards like the forward direction; its dropout between layers keeps the train/eval mode
    of the moment the layer was built; and each of 200 time steps runs as ~10 eager ops (586 ms for a
    step of the default model, torch 45 ms). Run each layer and direction as one compiled tf.scan over
    time instead: the same equations (torch's gate order, the weights as tlx lays them out)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def direction(x, w_ih, w_hh, bias, reverse):
        """Outputs [time, batch, hidden] and the last (h, c) of one LSTM direction over x [time, batch, in]."""
        projected = tf.einsum("tbi,gi->tbg", x, w_ih) + bias
        zeros = tf.zeros([tf.shape(x)[1], tf.shape(w_hh)[1]], x.dtype)

        def step(state, projected_t):
            h, c = state
            i, f, g, o = tf.split(projected_t + tf.matmul(h, w_hh, transpose_b=True), 4, axis=-1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            return tf.sigmoid(o) * tf.tanh(c), c

        hs, cs = tf.scan(step, projected, initializer=(zeros, zeros), reverse=reverse)
        last = 0 if reverse else -1
        return hs, hs[last], cs[last]

    lstm = tlx.nn.LSTM
    original = lstm.forward

    def forward(self, input, states=None):
        if states is not None or not self.bias:  # starting states, no bias: not used here
            return original(self, input, states)
        x = tf.transpose(input, perm=(1, 0, 2)) if self.batch_first else input
        directions = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer and self.is_train and self.dropout:
                x = tf.nn.dropout(x, rate=self.dropout)
            outputs = []
            for backwards in range(directions):
                k = layer * directions + backwards
                # tensors, not the variables: a trace that holds variables breaks once their model is gone
                w_ih, w_hh = tf.convert_to_tensor(self.weight_ih[k]), tf.convert_to_tensor(self.weight_hh[k])
                hs, h, c = direction(x, w_ih, w_hh, self.bias_ih[k] + self.bias_hh[k], reverse=bool(backwards))
                outputs.append(hs)
                h_n.append(h)
                c_n.append(c)
            x = tf.concat(outputs, axis=-1) if directions == 2 else outputs[0]
        y = tf.transpose(x, perm=(1, 0, 2)) if self.batch_first else x
        return y, (tf.stack(h_n), tf.stack(c_n))

    lstm.forward = forward


# --- mindspore ---


def _survive_first_mindspore_op():
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


def _restore_checkparam_names():
    """`import tensorlayerx` fails with "cannot import name 'Rel' from 'mindspore._checkparam'": MindSpore
    2 flattened the Rel and Validator classes of 1.8 into module-level names. Give them back."""
    from mindspore import _checkparam

    relations = ("EQ", "NE", "LT", "LE", "GT", "GE", "INC_NEITHER", "INC_LEFT", "INC_RIGHT", "INC_BOTH", "IN", "NOT_IN")
    _checkparam.Rel = types.SimpleNamespace(**{name: getattr(_checkparam, name) for name in relations})
    _checkparam.Validator = _checkparam  # the same check_* functions, now module-level


def _alias_grad_base():
    """`import tensorlayerx` fails with "No module named 'mindspore.ops._grad'": tlx imports grad_base
    from there; MindSpore 2 keeps it in mindspore.ops._grad_experimental."""
    from mindspore.ops._grad_experimental import grad_base

    package = types.ModuleType("mindspore.ops._grad")
    package.__path__, package.grad_base = [], grad_base
    sys.modules["mindspore.ops._grad"] = package
    sys.modules["mindspore.ops._grad.grad_base"] = grad_base


def _give_initializers_a_plain_seed(tlx):
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


def _gather_embeddings_densely(tlx):
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


def _run_mindspore_lstm_fused(tlx):
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


def _one_forward_pass_per_step(tlx):
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


def _set_train_mode_everywhere(tlx):
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


def _seed_each_dropout_call(tlx):
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
