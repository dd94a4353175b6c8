"""Each tlx fix in imdb_lstm/compat.py: the behaviour works with it and breaks without it."""
import pytest

# fix name → (backend, code that needs the fix, what the failure without it says)
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
}

# Dropout two modules deep must be off after set_eval(), on every backend.
NESTED_DROPOUT = """
class Inner(tlx.nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = tlx.nn.Dropout(p=0.5)
    def forward(self, x):
        return self.drop(x)
class Outer(tlx.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Inner()
    def forward(self, x):
        return self.inner(x)
net = Outer()
net.set_eval()
out = tlx.convert_to_numpy(net(tlx.ones((64, 64))))
assert (out == 1).all(), "dropout is still on after set_eval()"
net.set_train()
assert (tlx.convert_to_numpy(net(tlx.ones((64, 64)))) == 0).any(), "dropout is off after set_train()"
"""
for backend in ("torch",):
    FIXES[f"_set_train_recursively[{backend}]"] = (backend, NESTED_DROPOUT, "dropout is still on")


@pytest.mark.parametrize("fix", FIXES)
def test_the_fix_is_needed_and_works(fix, backend_run):
    backend, code, failure = FIXES[fix]
    name = fix.split("[")[0]
    fixed = backend_run(backend, code)
    assert fixed.returncode == 0, fixed.stderr
    broken = backend_run(backend, code, without=name)
    assert broken.returncode != 0
    assert failure in broken.stderr
