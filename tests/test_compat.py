"""Each tlx fix in imdb_lstm/compat.py: the behaviour works with it and breaks without it."""
import pytest

from conftest import require

# fix name → (backend, code that needs the fix, what the failure without it says, fixes that need it)
FIXES = {
    "_skip_torchvision_box_ops": ("torch", "pass", "No module named 'torchvision'"),
    "_accept_remove_duplicate": (
        "torch",
        "net = tlx.nn.Linear(in_features=2, out_features=2)\n"
        "net(tlx.ones((1, 2)))",
        "remove_duplicate",
    ),
    "_keep_rnn_train_method": (
        "torch",
        "net = tlx.nn.LSTM(2, 2, batch_first=True)\n"
        "net(tlx.ones((1, 3, 2)))\n"
        "net.eval()",
        "'bool' object is not callable",
    ),
    "_step_real_torch_optimizer": (
        "torch",
        "net = tlx.nn.Linear(in_features=2, out_features=2)\n"
        "step = tlx.model.TrainOneStep(tlx.model.WithLoss(net, tlx.losses.softmax_cross_entropy_with_logits),\n"
        "                              tlx.optimizers.Adam(lr=0.1), net.trainable_weights)\n"
        "before = tlx.convert_to_numpy(net.trainable_weights[0]).copy()\n"
        "step(tlx.ones((4, 2)), tlx.convert_to_tensor(np.array([0, 1, 1, 1])))\n"
        "assert not np.allclose(before, tlx.convert_to_numpy(net.trainable_weights[0]))",
        "maximize",
    ),
    "_let_interrupts_out_of_convert_to_numpy": (  # a signal's KeyboardInterrupt landing inside .numpy()
        "torch",
        "import torch\n"
        "class Interrupted(torch.Tensor):\n"
        "    calls = 0\n"
        "    def numpy(self, *args, **kwargs):\n"
        "        Interrupted.calls += 1\n"
        "        if Interrupted.calls == 1:\n"
        "            raise KeyboardInterrupt\n"
        "        return super().numpy(*args, **kwargs)\n"
        "try:\n"
        "    tlx.convert_to_numpy(torch.zeros(2).as_subclass(Interrupted))\n"
        "except KeyboardInterrupt:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('the interrupt was swallowed')",
        "the interrupt was swallowed",
    ),
}

LSTM_EQUALS_PADDLE_LSTM = """
import paddle
for layers in (1, 2):
    for bidirectional in (False, True):
        lstm = tlx.nn.LSTM(5, 6, num_layers=layers, bidirectional=bidirectional, batch_first=True)
        reference = paddle.nn.LSTM(5, 6, num_layers=layers, direction="bidirect" if bidirectional else "forward")
        weights = dict(reference.named_parameters())
        cells = [(layer, suffix) for layer in range(layers) for suffix in ("", "_reverse")[:1 + bidirectional]]
        for k, (layer, suffix) in enumerate(cells):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                weights[f"{name}_l{layer}{suffix}"].set_value(getattr(lstm, name)[k])
        x = paddle.randn([3, 4, 5])
        for states in ((), ((paddle.randn([len(cells), 3, 6]), paddle.randn([len(cells), 3, 6])),)):
            (out, (h, c)), (ref_out, (ref_h, ref_c)) = lstm(x, *states), reference(x, *states)
            for a, b in ((out, ref_out), (h, ref_h), (c, ref_c)):
                np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
"""

HE_XAVIER = """
import paddle
expected = {"he": (2 / 400) ** 0.5, "xavier": (2 / 1000) ** 0.5}  # fan_in 400, fan_out 600
for name in ("he_normal", "he_uniform", "xavier_normal", "xavier_uniform"):
    w = paddle.create_parameter([400, 600], "float32")
    getattr(tlx.ops, name)(w)
    assert abs(w.numpy().std() / expected[name.split("_")[0]] - 1) < 0.02, name
w = tlx.nn.Linear(in_features=400, out_features=600, W_init="he_normal").weights.numpy()
assert abs(w.std() / expected["he"] - 1) < 0.02
"""

FIXES.update({
    "_install_fluid_standin": ("paddle", "pass", "No module named 'paddle.fluid'", "_truncate_at_two_sigma"),
    "_truncate_at_two_sigma": (
        "paddle",
        "w = tlx.convert_to_numpy(tlx.nn.Linear(in_features=200, out_features=200).weights)\n"
        "assert np.abs(w).max() <= 0.04 * (1 + 1e-6), 'not truncated at 2 std'",
        "not truncated at 2 std",
    ),
    "_remove_fluid_standin": (  # code that picks its paddle 2 or 3 path by whether paddle.fluid imports
        "paddle",
        "import paddle\n"
        "try:\n"
        "    import paddle.fluid as fluid\n"
        "    place = fluid.CPUPlace()  # paddle 2's API, which the stand-in does not have\n"
        "except ImportError:\n"
        "    place = paddle.CPUPlace()\n",
        "has no attribute 'CPUPlace'",
    ),
    "_pack_rnn_weights_eagerly": ("paddle", LSTM_EQUALS_PADDLE_LSTM, "coalesce_tensor"),
    "_make_rnn_zero_states": ("paddle", LSTM_EQUALS_PADDLE_LSTM, "fill_constant_batch_size_like"),
    "_let_gradients_through_frozen_rnns": (  # what adversarial training asks of a frozen LSTM
        "paddle",
        "import paddle\n"
        "lstm = tlx.nn.LSTM(3, 4, batch_first=True)\n"
        "x = tlx.convert_to_tensor(np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32))\n"
        "states = (paddle.full([1, 2, 4], 0.5), paddle.full([1, 2, 4], -0.5))\n"
        "trained = lstm(x, states)[0].numpy()\n"
        "kept = [tlx.convert_to_numpy(w).copy() for w in lstm.all_weights]\n"
        "for w in lstm.all_weights:\n"
        "    w.stop_gradient = True\n"
        "assert lstm(x)[0].stop_gradient, 'nothing needs a gradient: no graph'\n"
        "x.stop_gradient = False\n"
        "out = lstm(x, states)[0]\n"
        "np.testing.assert_array_equal(out.numpy(), trained)\n"
        "out.sum().backward()\n"
        "assert float(abs(x.grad).sum()) > 0\n"
        "assert all(w.grad is None for w in lstm.all_weights)\n"
        "assert all((tlx.convert_to_numpy(w) == k).all() for w, k in zip(lstm.all_weights, kept))\n"
        "np.testing.assert_array_equal(lstm(x, states)[0].numpy(), trained)  # the LSTM keeps its own weights",
        "Required tensor shall not be nullptr",
    ),
    "_draw_he_xavier_eagerly": ("paddle", HE_XAVIER, "gaussian_random"),
    "_skip_zero_weight_decay": (  # the harm: a decay by 0 computed for every weight at every step
        "paddle",
        "import paddle\n"
        "decays = []\n"
        "call = paddle.regularizer.L2Decay.__call__\n"
        "paddle.regularizer.L2Decay.__call__ = lambda self, *a, **k: decays.append(1) or call(self, *a, **k)\n"
        "net = tlx.nn.Linear(in_features=2, out_features=2)\n"
        "step = tlx.model.TrainOneStep(tlx.model.WithLoss(net, tlx.losses.softmax_cross_entropy_with_logits),\n"
        "                              tlx.optimizers.Adam(lr=0.1), net.trainable_weights)\n"
        "for _ in range(3):\n"
        "    step(tlx.ones((4, 2)), tlx.convert_to_tensor(np.array([0, 1, 1, 1])))\n"
        "assert not decays, f'a weight decay of 0 ran {len(decays)} times in 3 steps'",
        "a weight decay of 0 ran 6 times in 3 steps",
    ),
    "_take_max_at_argmax": (  # the harm: paddle's max gradient, 17.9 s for one batch of LSTM states
        "paddle",
        "import paddle\n"
        "x = paddle.to_tensor(np.random.default_rng(0).standard_normal((3, 5, 4)).astype('float32'),\n"
        "                     stop_gradient=False)\n"
        "for keepdims in (False, True):\n"
        "    y = tlx.reduce_max(x, axis=1, keepdims=keepdims)\n"
        "    np.testing.assert_array_equal(y.numpy(), x.numpy().max(axis=1, keepdims=keepdims))\n"
        "    (y * paddle.arange(12, dtype='float32').reshape(y.shape)).sum().backward()\n"
        "    at_max = x.numpy() == x.numpy().max(axis=1, keepdims=True)\n"
        "    np.testing.assert_array_equal(x.grad.numpy(), at_max * np.arange(12).reshape(3, 1, 4))\n"
        "    x.clear_gradient()\n"
        "    assert y.grad_fn.name() != 'MaxGradNode', 'the gradient is paddle max gradient'\n",
        "the gradient is paddle max gradient",
    ),
    "_let_interrupts_out_of_filter_grads": (  # a signal's KeyboardInterrupt while the gradients unzip
        "paddle",
        "from tensorlayerx.optimizers.paddle_optimizers import filter_grads\n"
        "class Interrupted(list):\n"
        "    def __iter__(self):\n"
        "        raise KeyboardInterrupt\n"
        "try:\n"
        "    filter_grads(Interrupted([(1, 2)]), [1])\n"
        "except KeyboardInterrupt:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('the interrupt was swallowed')",
        "the interrupt was swallowed",
    ),
})

# After set_eval(), dropout two modules deep and between LSTM layers must be off, on every backend.
EVAL_MODE = """
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
"""
for backend in ("torch", "paddle"):
    FIXES[f"_set_train_recursively[{backend}]"] = (backend, EVAL_MODE, "dropout is still on")


TF_BIDIRECTIONAL = """
import tensorflow as tf
backend.seed(0)
lstm = tlx.nn.LSTM(4, 3, bidirectional=True, batch_first=True)
x = tf.constant(np.random.default_rng(0).normal(size=(5, 7, 4)), dtype=tf.float32)
alone = lstm(x[:1])[0].numpy()
# the backward direction reads time backwards: at the last step it has seen only the last word
changed = lstm(tf.concat([x[:1, :-1] + 1, x[:1, -1:]], axis=1))[0].numpy()
assert np.allclose(changed[:, -1, 3:], alone[:, -1, 3:], atol=1e-6), "the backward direction is not reversed"
assert not np.allclose(changed[:, -1, :3], alone[:, -1, :3], atol=1e-6)
"""
FIXES["_run_lstm_as_compiled_scans[tensorflow]"] = ("tensorflow", TF_BIDIRECTIONAL, "not reversed")


# --- mindspore ---
MS_TRAIN_AGAIN = """
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
"""
FIXES["_set_train_mode_everywhere"] = ("mindspore", MS_TRAIN_AGAIN, "dropout is off after set_train()")

MS_ADAM_STEP = """
net = tlx.nn.Sequential([tlx.nn.Embedding(30, 4), tlx.nn.Flatten(), tlx.nn.Linear(in_features=12, out_features=2)])
forwards = []
def loss(logits, labels):
    forwards.append(1)
    return tlx.losses.softmax_cross_entropy_with_logits(logits, labels)
step = tlx.model.TrainOneStep(tlx.model.WithLoss(net, loss), tlx.optimizers.Adam(lr=0.1), net.trainable_weights)
step(tlx.convert_to_tensor(np.array([[1, 2, 3], [4, 5, 6]])), tlx.convert_to_tensor(np.array([0, 1])))
assert len(forwards) == 1, f"one step ran the model forward {len(forwards)} times"
"""

MS_LSTM_LOOP = """
from mindspore.nn.layer import rnns
steps = []
cell = rnns._lstm_cell
rnns._lstm_cell = lambda *args: steps.append(1) or cell(*args)
lstm = tlx.nn.LSTM(4, 3, batch_first=True)
lstm(tlx.ones((2, 50, 4)))
assert not steps, f"python ran the LSTM cell {len(steps)} times, once a time step"
"""

MS_DROPOUT = """
from imdb_lstm import backend
x = tlx.ones((4, 6, 8))
drop, lstm = tlx.nn.Dropout(p=0.5), tlx.nn.LSTM(8, 8, num_layers=2, dropout=0.5, batch_first=True)
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
"""

FIXES.update({
    "_survive_first_mindspore_op": ("mindspore", "tlx.transpose(tlx.ones((1, 2)), (1, 0))",
                                    "numpy.core.multiarray failed to import"),
    "_restore_checkparam_names": ("mindspore", "pass", "cannot import name 'Rel'"),
    "_alias_grad_base": ("mindspore", "pass", "No module named 'mindspore.ops._grad'"),
    "_give_initializers_a_plain_seed": ("mindspore", "tlx.nn.Embedding(10, 3)", "The only supported seed types"),
    "_gather_embeddings_densely": ("mindspore", MS_ADAM_STEP, "must be equal to"),
    "_one_forward_pass_per_step": ("mindspore", MS_ADAM_STEP, "ran the model forward 2 times"),
    "_run_mindspore_lstm_fused": ("mindspore", MS_LSTM_LOOP, "ran the LSTM cell 50 times"),
    "_seed_each_dropout_call": ("mindspore", MS_DROPOUT, "other dropout"),
})

@pytest.mark.parametrize("fix", FIXES)
def test_the_code_fails_without_the_fix(fix, backend_run):
    """That it works with every fix in place, tests/test_backend.py shows: it runs each code in the test
    process, on each backend (test_backends.py runs it on the others)."""
    backend, code, failure, *dependents = FIXES[fix]
    require(backend)
    broken = backend_run(backend, code, without=[fix.split("[")[0], *dependents])
    assert broken.returncode != 0
    assert failure in broken.stderr


def test_a_mindspore_failure_leaves_nothing_in_the_working_directory(backend_run, tmp_path):
    """MindSpore writes a failed graph's analysis to rank_0/om/ under the working directory, which in a
    checkout is an untracked folder among the project's files; backends/mindspore.py sends it elsewhere."""
    require("mindspore")
    failed = backend_run("mindspore", MS_ADAM_STEP, without=["_gather_embeddings_densely"], cwd=tmp_path)
    assert failed.returncode != 0 and "must be equal to" in failed.stderr
    assert list(tmp_path.iterdir()) == []
