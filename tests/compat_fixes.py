"""What each TensorLayerX fix (imdb_lstm/backends/NAME/fixes.py) makes work: code that needs the fix, called with the
loaded tlx, and what it fails with when the fix is left out. tests/test_compat.py runs each in a backend's
process without its fix; tests/test_backend.py runs each in the test process with every fix in place."""

import numpy as np

from imdb_lstm import backend


def nothing(tlx):
    """The fix is what lets `import tensorlayerx` (in loading the backend) work at all."""


def accept_remove_duplicate(tlx):
    net = tlx.nn.Linear(in_features=2, out_features=2)
    net(tlx.ones((1, 2)))


def keep_rnn_train_method(tlx):
    net = tlx.nn.LSTM(2, 2, batch_first=True)
    net(tlx.ones((1, 3, 2)))
    net.eval()


def step_real_torch_optimizer(tlx):
    net = tlx.nn.Linear(in_features=2, out_features=2)
    step = tlx.model.TrainOneStep(
        tlx.model.WithLoss(net, tlx.losses.softmax_cross_entropy_with_logits),
        tlx.optimizers.Adam(lr=0.1),
        net.trainable_weights,
    )
    before = tlx.convert_to_numpy(net.trainable_weights[0]).copy()
    step(tlx.ones((4, 2)), tlx.convert_to_tensor(np.array([0, 1, 1, 1])))
    assert not np.allclose(before, tlx.convert_to_numpy(net.trainable_weights[0]))


def let_interrupts_out_of_convert_to_numpy(tlx):
    """A signal's KeyboardInterrupt landing inside .numpy()."""
    import torch

    class Interrupted(torch.Tensor):
        calls = 0

        def numpy(self, *args, **kwargs):
            Interrupted.calls += 1
            if Interrupted.calls == 1:
                raise KeyboardInterrupt
            return super().numpy(*args, **kwargs)

    try:
        tlx.convert_to_numpy(torch.zeros(2).as_subclass(Interrupted))
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the interrupt was swallowed")


def truncate_at_two_sigma(tlx):
    w = tlx.convert_to_numpy(tlx.nn.Linear(in_features=200, out_features=200).weights)
    assert np.abs(w).max() <= 0.04 * (1 + 1e-6), "not truncated at 2 std"


def remove_fluid_standin(tlx):
    """Code that picks its paddle 2 or 3 path by whether paddle.fluid imports."""
    import paddle

    try:
        import paddle.fluid as fluid

        fluid.CPUPlace()  # paddle 2's API, which the stand-in does not have
    except ImportError:
        paddle.CPUPlace()


def lstm_equals_paddle_lstm(tlx):
    import paddle

    for layers in (1, 2):
        for bidirectional in (False, True):
            lstm = tlx.nn.LSTM(5, 6, num_layers=layers, bidirectional=bidirectional, batch_first=True)
            reference = paddle.nn.LSTM(5, 6, num_layers=layers, direction="bidirect" if bidirectional else "forward")
            weights = dict(reference.named_parameters())
            cells = [(layer, suffix) for layer in range(layers) for suffix in ("", "_reverse")[: 1 + bidirectional]]
            for k, (layer, suffix) in enumerate(cells):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    weights[f"{name}_l{layer}{suffix}"].set_value(getattr(lstm, name)[k])
            x = paddle.randn([3, 4, 5])
            for states in ((), ((paddle.randn([len(cells), 3, 6]), paddle.randn([len(cells), 3, 6])),)):
                (out, (h, c)), (ref_out, (ref_h, ref_c)) = (lstm(x, *states), reference(x, *states))
                for a, b in ((out, ref_out), (h, ref_h), (c, ref_c)):
                    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def let_gradients_through_frozen_rnns(tlx):
    """What adversarial training asks of a frozen LSTM."""
    import paddle

    lstm = tlx.nn.LSTM(3, 4, batch_first=True)
    x = tlx.convert_to_tensor(np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32))
    states = (paddle.full([1, 2, 4], 0.5), paddle.full([1, 2, 4], -0.5))
    trained = lstm(x, states)[0].numpy()
    kept = [tlx.convert_to_numpy(w).copy() for w in lstm.all_weights]
    for w in lstm.all_weights:
        w.stop_gradient = True
    assert lstm(x)[0].stop_gradient, "nothing needs a gradient: no graph"
    x.stop_gradient = False
    out = lstm(x, states)[0]
    np.testing.assert_array_equal(out.numpy(), trained)
    out.sum().backward()
    assert float(abs(x.grad).sum()) > 0
    assert all(w.grad is None for w in lstm.all_weights)
    assert all((tlx.convert_to_numpy(w) == k).all() for w, k in zip(lstm.all_weights, kept))
    np.testing.assert_array_equal(lstm(x, states)[0].numpy(), trained)  # the LSTM keeps its own weights


def he_xavier(tlx):
    import paddle

    expected = {"he": (2 / 400) ** 0.5, "xavier": (2 / 1000) ** 0.5}  # fan_in 400, fan_out 600
    for name in ("he_normal", "he_uniform", "xavier_normal", "xavier_uniform"):
        w = paddle.create_parameter([400, 600], "float32")
        getattr(tlx.ops, name)(w)
        assert abs(w.numpy().std() / expected[name.split("_")[0]] - 1) < 0.02, name
    w = tlx.nn.Linear(in_features=400, out_features=600, W_init="he_normal").weights.numpy()
    assert abs(w.std() / expected["he"] - 1) < 0.02


def skip_zero_weight_decay(tlx):
    """The harm: a decay by 0 computed for every weight at every step."""
    import paddle

    decays = []
    call = paddle.regularizer.L2Decay.__call__
    paddle.regularizer.L2Decay.__call__ = lambda self, *a, **k: decays.append(1) or call(self, *a, **k)
    net = tlx.nn.Linear(in_features=2, out_features=2)
    step = tlx.model.TrainOneStep(
        tlx.model.WithLoss(net, tlx.losses.softmax_cross_entropy_with_logits),
        tlx.optimizers.Adam(lr=0.1),
        net.trainable_weights,
    )
    for _ in range(3):
        step(tlx.ones((4, 2)), tlx.convert_to_tensor(np.array([0, 1, 1, 1])))
    assert not decays, f"a weight decay of 0 ran {len(decays)} times in 3 steps"


def take_max_at_argmax(tlx):
    """The harm: paddle's max gradient, 17.9 s for one batch of LSTM states."""
    import paddle

    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((3, 5, 4)).astype("float32"), stop_gradient=False)
    for keepdims in (False, True):
        y = tlx.reduce_max(x, axis=1, keepdims=keepdims)
        np.testing.assert_array_equal(y.numpy(), x.numpy().max(axis=1, keepdims=keepdims))
        (y * paddle.arange(12, dtype="float32").reshape(y.shape)).sum().backward()
        at_max = x.numpy() == x.numpy().max(axis=1, keepdims=True)
        np.testing.assert_array_equal(x.grad.numpy(), at_max * np.arange(12).reshape(3, 1, 4))
        x.clear_gradient()
        assert y.grad_fn.name() != "MaxGradNode", "the gradient is paddle max gradient"
    no_gradient = x.detach()  # paddle's own max, where no gradient is asked for
    for keepdims in (False, True):
        np.testing.assert_array_equal(tlx.reduce_max(no_gradient, axis=1, keepdims=keepdims).numpy(),
                                      x.numpy().max(axis=1, keepdims=keepdims))
    np.testing.assert_array_equal(tlx.reduce_max(no_gradient, axis=1).numpy(), x.numpy().max(axis=1))
    np.testing.assert_array_equal(tlx.reduce_max(x).numpy(), x.numpy().max())  # over every axis
    assert tlx.reduce_max(x[:1, :, :1], axis=1).shape == [1, 1], "a batch of one keeps its axis"


def let_interrupts_out_of_filter_grads(tlx):
    """A signal's KeyboardInterrupt while the gradients unzip."""
    from tensorlayerx.optimizers.paddle_optimizers import filter_grads

    class Interrupted(list):
        def __iter__(self):
            raise KeyboardInterrupt

    try:
        filter_grads(Interrupted([(1, 2)]), [1])
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the interrupt was swallowed")


def eval_mode(tlx):
    """After set_eval(), dropout two modules deep and between LSTM layers must be off, on every backend.."""

    class Inner(tlx.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = tlx.nn.LSTM(8, 8, num_layers=2, dropout=0.5, batch_first=True)
            self.drop = tlx.nn.Dropout(p=0.5)

        def forward(self, x):
            return self.drop(self.lstm(x)[0])

    class Outer(tlx.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def forward(self, x):
            return self.inner(x)

    net, x = Outer(), tlx.ones((4, 5, 8))
    net.set_eval()
    outputs = [tlx.convert_to_numpy(net(x)) for _ in range(3)]
    assert all((out == outputs[0]).all() for out in outputs), "dropout is still on after set_eval()"
    net.set_train()
    assert not (tlx.convert_to_numpy(net(x)) == outputs[0]).all(), "dropout is off after set_train()"


def tf_bidirectional(tlx):
    import tensorflow as tf

    backend.seed(0)
    lstm = tlx.nn.LSTM(4, 3, bidirectional=True, batch_first=True)
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 7, 4)), dtype=tf.float32)
    alone = lstm(x[:1])[0].numpy()
    # the backward direction reads time backwards: at the last step it has seen only the last word
    changed = lstm(tf.concat([x[:1, :-1] + 1, x[:1, -1:]], axis=1))[0].numpy()
    assert np.allclose(changed[:, -1, 3:], alone[:, -1, 3:], atol=1e-6), "the backward direction is not reversed"
    assert not np.allclose(changed[:, -1, :3], alone[:, -1, :3], atol=1e-6)


def ms_train_again(tlx):
    """--- mindspore ---."""

    class Net(tlx.nn.Module):  # a Dropout right under the model, as in SentimentLSTM
        def __init__(self):
            super().__init__()
            self.drop = tlx.nn.Dropout(p=0.5)

        def forward(self, x):
            return self.drop(x)

    net = Net()
    net.set_eval()
    net.set_train()  # as train does after each validation
    assert (tlx.convert_to_numpy(net(tlx.ones((4, 50)))) == 0).any(), "dropout is off after set_train()"


def survive_first_mindspore_op(tlx):
    tlx.transpose(tlx.ones((1, 2)), (1, 0))


def ms_transpose(tlx):
    transposed = tlx.transpose(tlx.convert_to_tensor(np.arange(6.0).reshape(2, 3)))
    assert transposed is not None, "tlx.transpose returned None"
    assert tlx.convert_to_numpy(transposed).tolist() == [[0, 3], [1, 4], [2, 5]]


def give_initializers_a_plain_seed(tlx):
    tlx.nn.Embedding(10, 3)


def ms_adam_step(tlx):
    net = tlx.nn.Sequential([tlx.nn.Embedding(30, 4), tlx.nn.Flatten(), tlx.nn.Linear(in_features=12, out_features=2)])
    forwards = []

    def loss(logits, labels):
        forwards.append(1)
        return tlx.losses.softmax_cross_entropy_with_logits(logits, labels)

    step = tlx.model.TrainOneStep(tlx.model.WithLoss(net, loss), tlx.optimizers.Adam(lr=0.1), net.trainable_weights)
    step(tlx.convert_to_tensor(np.array([[1, 2, 3], [4, 5, 6]])), tlx.convert_to_tensor(np.array([0, 1])))
    assert len(forwards) == 1, f"one step ran the model forward {len(forwards)} times"


def ms_lstm_loop(tlx):
    from mindspore.nn.layer import rnns

    steps = []
    cell = rnns._lstm_cell
    rnns._lstm_cell = lambda *args: steps.append(1) or cell(*args)
    lstm = tlx.nn.LSTM(4, 3, batch_first=True)
    lstm(tlx.ones((2, 50, 4)))
    assert not steps, f"python ran the LSTM cell {len(steps)} times, once a time step"


def ms_dropout(tlx):
    from imdb_lstm import backend

    x = tlx.ones((4, 6, 8))
    drop, lstm = (tlx.nn.Dropout(p=0.5), tlx.nn.LSTM(8, 8, num_layers=2, dropout=0.5, batch_first=True))
    for layer in (drop, lstm):
        layer.set_train()

    def masks():
        return [tlx.convert_to_numpy(drop(x)), tlx.convert_to_numpy(lstm(x)[0])]

    backend.seed(3)
    first = masks()
    backend.seed(3)
    assert all((a == b).all() for a, b in zip(first, masks())), "the same seed gave other dropout"
    state = backend.rng_state()
    first = masks()
    backend.set_rng_state(state)
    assert all((a == b).all() for a, b in zip(first, masks())), "a restored generator gave other dropout"


# fix name → (backend, the function that needs the fix, what the failure without it says, fixes that need it)
FIXES = {
    "skip_torchvision_box_ops": ("torch", nothing, "No module named 'torchvision'"),
    "accept_remove_duplicate": ("torch", accept_remove_duplicate, "remove_duplicate"),
    "keep_rnn_train_method": ("torch", keep_rnn_train_method, "'bool' object is not callable"),
    "step_real_torch_optimizer": ("torch", step_real_torch_optimizer, "maximize"),
    "let_interrupts_out_of_convert_to_numpy": (
        "torch",
        let_interrupts_out_of_convert_to_numpy,
        "the interrupt was swallowed",
    ),
    "install_fluid_standin": ("paddle", nothing, "No module named 'paddle.fluid'", "truncate_at_two_sigma"),
    "truncate_at_two_sigma": ("paddle", truncate_at_two_sigma, "not truncated at 2 std"),
    "remove_fluid_standin": ("paddle", remove_fluid_standin, "has no attribute 'CPUPlace'"),
    "pack_rnn_weights_eagerly": ("paddle", lstm_equals_paddle_lstm, "coalesce_tensor"),
    "make_rnn_zero_states": ("paddle", lstm_equals_paddle_lstm, "fill_constant_batch_size_like"),
    "let_gradients_through_frozen_rnns": (
        "paddle",
        let_gradients_through_frozen_rnns,
        "Required tensor shall not be nullptr",
    ),
    "draw_he_xavier_eagerly": ("paddle", he_xavier, "gaussian_random"),
    "skip_zero_weight_decay": ("paddle", skip_zero_weight_decay, "a weight decay of 0 ran 6 times in 3 steps"),
    "take_max_at_argmax": ("paddle", take_max_at_argmax, "the gradient is paddle max gradient"),
    "let_interrupts_out_of_filter_grads": (
        "paddle",
        let_interrupts_out_of_filter_grads,
        "the interrupt was swallowed",
    ),
    "set_train_recursively[torch]": ("torch", eval_mode, "dropout is still on"),
    "set_train_recursively[paddle]": ("paddle", eval_mode, "dropout is still on"),
    "run_lstm_as_compiled_scans[tensorflow]": ("tensorflow", tf_bidirectional, "not reversed"),
    "set_train_mode_everywhere": ("mindspore", ms_train_again, "dropout is off after set_train()"),
    "survive_first_mindspore_op": ("mindspore", survive_first_mindspore_op, "numpy.core.multiarray failed to import"),
    "restore_checkparam_names": ("mindspore", nothing, "cannot import name 'Rel'"),
    "alias_grad_base": ("mindspore", nothing, "No module named 'mindspore.ops._grad'"),
    "give_initializers_a_plain_seed": ("mindspore", give_initializers_a_plain_seed, "The only supported seed types"),
    "gather_embeddings_densely": ("mindspore", ms_adam_step, "must be equal to"),
    "return_transposes": ("mindspore", ms_transpose, "tlx.transpose returned None"),
    "one_forward_pass_per_step": ("mindspore", ms_adam_step, "ran the model forward 2 times"),
    "run_mindspore_lstm_fused": ("mindspore", ms_lstm_loop, "ran the LSTM cell 50 times"),
    "seed_each_dropout_call": ("mindspore", ms_dropout, "other dropout"),
}
