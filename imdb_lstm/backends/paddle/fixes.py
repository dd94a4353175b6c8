"""TensorLayerX 0.5.8's fixes for paddle 3 (tlx was written for paddle 2.2).

Each fix is small and says what breaks without it; tests/test_compat.py shows, for each, code that fails
without it (tests/compat_fixes.py). The backend's module (__init__.py) applies them, before the first
`import tensorlayerx` (`before_import`) or right after (`after_import`).
"""
import contextlib
import math
import sys
import types

from imdb_lstm.backends.shared_fixes import OPTIMIZERS, set_train_recursively  # noqa: F401 (one is applied from here)


def install_fluid_standin():
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


def truncate_at_two_sigma():
    """tlx.nn.Linear's default truncated_normal(stddev=0.02) is not truncated at all: fluid's
    initializer cut at mean ± 2 std (as TensorFlow's truncated_normal does), paddle 3's at ± 2.0
    absolute. (tlx's torch Linear draws its own way: values up to 0.054 at 300 × 300, measured.)"""
    from paddle.nn.initializer.normal import TruncatedNormalInitializer

    class TruncatedNormal2Sigma(TruncatedNormalInitializer):
        def __init__(self, loc=0.0, scale=1.0, seed=0):
            super().__init__(loc, scale, seed, a=loc - 2 * scale, b=loc + 2 * scale)

    sys.modules["paddle.fluid.initializer"].TruncatedNormalInitializer = TruncatedNormal2Sigma


def remove_fluid_standin():
    """Without this the partial stand-in stays importable as `paddle.fluid`, and other code that
    looks for it to pick a paddle 2 code path fails later on a missing name. tlx keeps its references."""
    import paddle

    for name in [n for n in sys.modules if n == "paddle.fluid" or n.startswith("paddle.fluid.")]:
        del sys.modules[name]
    del paddle.fluid


def pack_rnn_weights_eagerly(tlx):
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


def let_gradients_through_frozen_rnns(tlx):
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


def make_rnn_zero_states(tlx):
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


def draw_he_xavier_eagerly(tlx):
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


def take_max_at_argmax(tlx):
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


def skip_zero_weight_decay(tlx):
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


def let_interrupts_out_of_filter_grads():
    """A Ctrl-C or SIGTERM can be lost in every step of tlx's paddle optimizers: `filter_grads`
    unzips the gradients under a bare `except:`, which also catches a signal's KeyboardInterrupt."""
    from tensorlayerx.optimizers import paddle_optimizers

    def filter_grads(grads_and_vars, weights):
        unzipped = list(zip(*grads_and_vars))  # [params, grads], or [] when there are none
        params, grads = unzipped or ([], [])
        return params, grads, len(grads) == len(weights)

    paddle_optimizers.filter_grads = filter_grads
