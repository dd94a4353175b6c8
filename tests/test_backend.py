"""The one backend door, in the test process: loading, kernel pins, the compat fixes, seeds, devices and
the optimizer and random-generator state.

tlx runs in the test process, on the backend IMDB_TEST_BACKEND names (torch if unset); test_backends.py
runs these files once more on each other installed backend. A mutation tool sees only what runs in its own
process (TESTING.md): these tests let it see the backend-facing code run.
"""
import os
import sys

import numpy as np
import pytest
from compat_fixes import FIXES
from conftest import IN_PROCESS
from helpers import records_gradient, weights_of

from imdb_lstm import backend, backends
from imdb_lstm.errors import PipelineError

PINS = {  # what each backend's KERNELS must set (written out: a mutated KERNELS must not pass)
    "torch": {"ONEDNN_DEFAULT_FPMATH_MODE": "STRICT"},
    "paddle": {"MKL_DEBUG_CPU_TYPE": "5", "MKL_CBWR": "AVX2", "FLAGS_paddle_num_threads": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "FLAGS_use_mkldnn": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "tensorflow": {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "mindspore": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def test_loading_pins_the_kernels_and_applies_every_fix(tlx, loaded):
    """First in this file: the test in which backend.load runs, so a mutation tool maps the load's code
    (pins, the backend's fixes.py) to this test, which runs what each fix makes work: the code
    that tests/test_compat.py shows failing without it, and for torch a closer look."""
    pinned = loaded["environment"]  # what backend.load set
    assert {name: pinned.get(name) for name in PINS[IN_PROCESS]} == PINS[IN_PROCESS]
    assert backends.get(IN_PROCESS).KERNELS == PINS[IN_PROCESS] and pinned["TL_BACKEND"] == IN_PROCESS
    assert pinned["GOMP_SPINCOUNT"] == os.environ.get("GOMP_SPINCOUNT", "1000")
    # tlx 0.5.8 warns at import that each backend is newer than it knows, paddle that it has no ccache:
    # noise a stage's log should not carry
    assert not [w for w in loaded["warnings"] if w.startswith(("The version of the backend", "No ccache found"))]
    assert tlx.logging.get_verbosity() == tlx.logging.WARN, "tlx would log every layer it builds"
    fixes = [fix for fix, (fixed, *_) in FIXES.items() if fixed == IN_PROCESS]
    assert fixes, f"no fix of {IN_PROCESS} is checked"
    for fix in fixes:
        FIXES[fix][1](tlx)
    if IN_PROCESS == "torch":
        torch_fixes_in_depth(tlx)
    elif IN_PROCESS == "tensorflow":
        assert pinned["TF_CPP_MIN_LOG_LEVEL"] == os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")
    elif IN_PROCESS == "mindspore":
        assert pinned["GLOG_v"] == os.environ.get("GLOG_v", "3")


def torch_fixes_in_depth(tlx):
    import torch
    with pytest.raises(ImportError) as missing:  # skip_torchvision_box_ops: import worked
        sys.modules["tensorlayerx.vision.ops.torch_ops"].nms()
    assert str(missing.value) == "tensorlayerx's box ops (box_area, box_iou, nms) need torchvision"
    # let_interrupts_out_of_convert_to_numpy: the same function in every tlx module that had tlx's
    assert sys.modules["tensorlayerx.backend.ops.torch_backend"].convert_to_numpy is tlx.convert_to_numpy
    # set_train_recursively: a mode must be a bool, as in tlx
    with pytest.raises(ValueError, match="^training mode is expected to be boolean$"):
        tlx.nn.Linear(in_features=2, out_features=2).set_train("yes")
    # step_real_torch_optimizer: as tlx, no step before a gradient
    with pytest.raises(AttributeError, match=r"^Can not apply gradients before zero_grad call\.$"):
        tlx.optimizers.Adam(lr=0.1).apply_gradients([])

    class Inner(tlx.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = tlx.nn.LSTM(4, 4, num_layers=2, dropout=0.5, batch_first=True)
            self.drop = tlx.nn.Dropout(p=0.5)

        def forward(self, x):
            return self.drop(self.lstm(x)[0])

    class Net(tlx.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner()
            self.classify = tlx.nn.Linear(in_features=4, out_features=2)

        def forward(self, x):
            return tlx.reduce_mean(self.classify(self.inner(x)), axis=1)

    net, x = Net(), tlx.ones((3, 5, 4))
    assert len(list(net.parameters())) == 10  # accept_remove_duplicate: 8 LSTM tensors, 2 Linear
    twice = tlx.nn.Sequential([net.classify, net.classify])  # one layer in two places: its weights once
    assert len(list(twice.parameters())) == 2
    net.set_eval()  # keep_rnn_train_method: eval() works; set_train_recursively: dropout off at depth 2
    assert not net.inner.lstm.training and net.inner.drop.is_train is False
    assert (tlx.convert_to_numpy(net(x)) == tlx.convert_to_numpy(net(x))).all()
    net.set_train()
    assert net.inner.lstm.training and not (tlx.convert_to_numpy(net(x)) == tlx.convert_to_numpy(net(x))).all()
    step = tlx.model.TrainOneStep(tlx.model.WithLoss(net, tlx.losses.softmax_cross_entropy_with_logits),
                                  tlx.optimizers.Adam(lr=0.1), net.trainable_weights)
    before = tlx.convert_to_numpy(net.classify.weights).copy()
    step(x, tlx.convert_to_tensor(np.array([0, 1, 1])))  # _step_real_torch_optimizer
    assert not (before == tlx.convert_to_numpy(net.classify.weights)).all()

    class Interrupted(torch.Tensor):  # _let_interrupts_out_of_convert_to_numpy
        def numpy(self, *args, **kwargs):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tlx.convert_to_numpy(torch.zeros(2).as_subclass(Interrupted))


def test_a_linear_layer_starts_from_a_normal_cut_at_two_standard_deviations(tlx):
    """tlx's default for Linear: truncated_normal(stddev=0.02), cut at ± 2 std (paddle needs a fix for that).
    tlx's torch Linear draws its own way (wider: up to 0.054 here)."""
    if IN_PROCESS == "torch":
        pytest.skip("tlx's torch Linear does not draw from truncated_normal")
    backend.seed(0)
    weights = tlx.convert_to_numpy(tlx.nn.Linear(in_features=300, out_features=300).weights)
    assert np.abs(weights).max() <= 0.04 + 1e-7 and abs(weights.mean()) < 0.001
    assert 0.0170 < weights.std() < 0.0182, "a normal cut at ± 2 std keeps 0.88 of its spread"
    if IN_PROCESS == "paddle":  # remove_fluid_standin: the paddle.fluid stand-in is gone once tlx is in
        assert not [name for name in sys.modules if name.startswith("paddle.fluid")]


def test_one_process_runs_one_backend(tlx):
    other = "paddle" if IN_PROCESS == "torch" else "torch"
    assert backend.load(IN_PROCESS) is tlx and backend.tlx() is tlx
    with pytest.raises(PipelineError, match=f"^backend {IN_PROCESS} is loaded already; one process runs one backend$"):
        backend.load(other)
    assert backend.version() == f"{IN_PROCESS} {tlx.BACKEND_VERSION}" and backend.device() == "cpu"
    if IN_PROCESS == "torch":
        assert __import__("torch").get_num_threads() == 2, "the pinned thread count"
        assert __import__("torch").backends.mkldnn.enabled, "oneDNN's LSTM: torch's fastest on the CPU"
    elif IN_PROCESS == "tensorflow":
        threading = __import__("tensorflow").config.threading
        assert (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()) == (2, 1)


def test_building_a_model_before_loading_a_backend_says_so(tlx, monkeypatch):
    monkeypatch.setattr(backend, "_loaded", None)
    with pytest.raises(RuntimeError, match=r"^call imdb_lstm\.backend\.load\(name\) before building a model$"):
        backend.tlx()


def test_asking_for_a_gpu_that_is_not_there_is_refused(tlx):
    entry = backend._entry
    with pytest.raises(PipelineError) as refused:
        backend._use_device(IN_PROCESS, entry, "gpu")
    assert str(refused.value) == f"device gpu was asked for, but {IN_PROCESS} sees no GPU: use device cpu or auto"
    backend._use_device(IN_PROCESS, entry, "auto")
    assert backend.device() == "cpu"


def test_a_seed_gives_the_same_weights_and_another_seed_others(model, tlx):
    def weights(seed):
        backend.seed(seed)
        return weights_of(tlx, model.SentimentLSTM(30, 4, 3))
    first = weights(3)
    assert all((a == b).all() for a, b in zip(first, weights(3)))
    assert not all((a == b).all() for a, b in zip(first, weights(4)))
    # seeding also asks for deterministic kernels, where the framework has the switch
    if IN_PROCESS == "torch":
        import torch
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    elif IN_PROCESS == "tensorflow":
        from tensorflow.python.framework import config  # the public module has the switch, not the reading
        assert config.is_op_determinism_enabled()
    elif IN_PROCESS == "mindspore":
        from mindspore.device_manager import DeviceManagerConf
        assert DeviceManagerConf.get_instance().is_deterministic_configured()


def test_no_grad_records_no_graph_and_set_trainable_switches_gradients(model, tlx):
    net = model.SentimentLSTM(30, 4, 3)
    ids = tlx.convert_to_tensor(np.ones((2, 5), np.int64))
    if IN_PROCESS in ("tensorflow", "mindspore"):  # they record a graph only inside a step, and switch nothing
        with backend.no_grad():
            assert tuple(net(ids).shape) == (2, 2)
        return
    assert records_gradient(net(ids))
    with backend.no_grad():
        assert not records_gradient(net(ids))
    embedding = net.embedding.all_weights[0]
    backend.set_trainable(embedding, False)
    assert not records_gradient(embedding)
    backend.set_trainable(embedding, True)
    assert records_gradient(embedding)


def small_training(model, tlx, dropout=0.0):
    from imdb_lstm.training import CountingLoss, make_step
    backend.seed(0)
    net = model.SentimentLSTM(30, 4, 3, bidirectional=True, num_layers=2, dropout=dropout)
    step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), lr=0.05)
    net.set_train()
    rng = np.random.default_rng(0)
    ids, labels = rng.integers(0, 30, (16, 7)), rng.integers(0, 2, 16)
    return net, step, lambda: float(step(tlx.convert_to_tensor(ids), tlx.convert_to_tensor(labels)))


def test_an_optimizer_and_dropout_restored_from_their_state_continue_with_the_same_bits(model, tlx):
    assert backend.optimizer_state(small_training(model, tlx)[1]) == {}, "no state before the first step"
    dropout = 0.0 if backend.rng_state() is None else 0.5  # tensorflow's dropout state cannot be saved
    net, step, train = small_training(model, tlx, dropout=dropout)
    train(), train()
    weights, optimizer, rng = weights_of(tlx, net), backend.optimizer_state(step), backend.rng_state()
    assert optimizer and all(isinstance(v, (np.ndarray, np.generic)) for v in optimizer.values())
    going_on = [train() for _ in range(3)], weights_of(tlx, net)
    net, step, train = small_training(model, tlx, dropout=dropout)
    tlx.files.assign_weights(weights, net)
    backend.set_rng_state(rng)
    backend.restore_optimizer(step, optimizer)
    resumed = [train() for _ in range(3)], weights_of(tlx, net)
    assert going_on[0] == resumed[0]
    assert all((a == b).all() for a, b in zip(going_on[1], resumed[1]))
    backend.restore_optimizer(step, {})  # nothing saved: nothing to restore, and no error
