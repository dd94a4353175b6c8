"""The backend-facing code in the test process itself: the model, its files, prediction, the training
step, the backend's helpers and its compat.py fixes. The subprocess tests (test_backends,
test_model_files, test_stages) cover every backend; these exist so that a mutation tool, which sees only
what runs in its own process, sees this code run (TESTING.md). tlx picks its backend once per process:
IMDB_TEST_BACKEND names it (torch if unset); test_backends.py runs this file once for each other one.
"""
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import require
from imdb_lstm import backend, backends, errors
from imdb_lstm.errors import PipelineError
from test_compat import FIXES
from test_model_files import CASES, damage

NAME = os.environ.get("IMDB_TEST_BACKEND", "torch")
PINNED = {}  # the environment as backend.load left it
LOAD_WARNINGS = []  # what it warned


@pytest.fixture(scope="module")
def tlx():
    require(NAME)
    environment = dict(os.environ)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = backend.load(NAME)
    LOAD_WARNINGS.extend(str(warning.message) for warning in caught)
    PINNED.update(os.environ)
    os.environ.clear()  # the kernel pins stay out of the subprocesses of later tests
    os.environ.update(environment)
    return loaded


@pytest.fixture(scope="module")
def model(tlx):
    import imdb_lstm.model
    return imdb_lstm.model


def weights_of(tlx, net):
    return [tlx.convert_to_numpy(w).copy() for w in net.all_weights]


def spread_weights(tlx, net, seed=3):
    """Weights drawn from N(0, 1), far from the start's small ones, so that each word and step moves the
    logits well above rounding (seed 3 leaves the small test models' ReLUs on)."""
    rng = np.random.default_rng(seed)
    tlx.files.assign_weights([rng.normal(0, 1, tuple(w.shape)).astype(np.float32) for w in net.all_weights], net)


def records_gradient(weight):
    """Whether the framework takes a gradient for `weight` (each names it its own way)."""
    return not weight.stop_gradient if NAME == "paddle" else weight.requires_grad


# --- backend -------------------------------------------------------------------------------------

PINS = {  # what each backend's KERNELS must set (written out: a mutated KERNELS must not pass)
    "torch": {"ONEDNN_DEFAULT_FPMATH_MODE": "STRICT"},
    "paddle": {"MKL_DEBUG_CPU_TYPE": "5", "MKL_CBWR": "AVX2", "FLAGS_paddle_num_threads": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "FLAGS_use_mkldnn": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "tensorflow": {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "mindspore": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def test_loading_pins_the_kernels_and_applies_every_fix(tlx):
    """First in this file: the test in which backend.load runs, so a mutation tool maps the load's code
    (pins, the backend's compat.py fixes) to this test, which runs what each fix makes work: the code
    that tests/test_compat.py shows failing without it, and for torch a closer look."""
    assert {name: PINNED.get(name) for name in PINS[NAME]} == PINS[NAME]
    assert backends.get(NAME).KERNELS == PINS[NAME] and PINNED["TL_BACKEND"] == NAME
    assert PINNED["GOMP_SPINCOUNT"] == os.environ.get("GOMP_SPINCOUNT", "1000")
    # tlx 0.5.8 warns at import that each backend is newer than it knows, paddle that it has no ccache:
    # noise a stage's log should not carry
    assert not [w for w in LOAD_WARNINGS if w.startswith(("The version of the backend", "No ccache found"))]
    assert tlx.logging.get_verbosity() == tlx.logging.WARN, "tlx would log every layer it builds"
    fixes = [fix for fix, (fixed, *_) in FIXES.items() if fixed == NAME]
    assert fixes, f"no compat fix of {NAME} is checked"
    for fix in fixes:
        exec(FIXES[fix][1], {"tlx": tlx, "np": np, "backend": backend})
    if NAME == "torch":
        torch_fixes_in_depth(tlx)
    elif NAME == "tensorflow":
        assert PINNED["TF_CPP_MIN_LOG_LEVEL"] == os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")
    elif NAME == "mindspore":
        assert PINNED["GLOG_v"] == os.environ.get("GLOG_v", "3")


def torch_fixes_in_depth(tlx):
    import torch
    with pytest.raises(ImportError) as missing:  # _skip_torchvision_box_ops: import worked
        sys.modules["tensorlayerx.vision.ops.torch_ops"].nms()
    assert str(missing.value) == "tensorlayerx's box ops (box_area, box_iou, nms) need torchvision"
    # _let_interrupts_out_of_convert_to_numpy: the same function in every tlx module that had tlx's
    assert sys.modules["tensorlayerx.backend.ops.torch_backend"].convert_to_numpy is tlx.convert_to_numpy
    # _set_train_recursively: a mode must be a bool, as in tlx
    with pytest.raises(ValueError, match="^training mode is expected to be boolean$"):
        tlx.nn.Linear(in_features=2, out_features=2).set_train("yes")
    # _step_real_torch_optimizer: as tlx, no step before a gradient
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
    assert len(list(net.parameters())) == 10  # _accept_remove_duplicate: 8 LSTM tensors, 2 Linear
    twice = tlx.nn.Sequential([net.classify, net.classify])  # one layer in two places: its weights once
    assert len(list(twice.parameters())) == 2
    net.set_eval()  # _keep_rnn_train_method: eval() works; _set_train_recursively: dropout off at depth 2
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
    if NAME == "torch":
        pytest.skip("tlx's torch Linear does not draw from truncated_normal")
    backend.seed(0)
    weights = tlx.convert_to_numpy(tlx.nn.Linear(in_features=300, out_features=300).weights)
    assert np.abs(weights).max() <= 0.04 + 1e-7 and abs(weights.mean()) < 0.001
    assert 0.0170 < weights.std() < 0.0182, "a normal cut at ± 2 std keeps 0.88 of its spread"
    if NAME == "paddle":  # _remove_fluid_standin: the paddle.fluid stand-in is gone once tlx is in
        assert not [name for name in sys.modules if name.startswith("paddle.fluid")]


def test_one_process_runs_one_backend(tlx):
    other = "paddle" if NAME == "torch" else "torch"
    assert backend.load(NAME) is tlx and backend.tlx() is tlx
    with pytest.raises(PipelineError, match=f"^backend {NAME} is loaded already; one process runs one backend$"):
        backend.load(other)
    assert backend.version() == f"{NAME} {tlx.BACKEND_VERSION}" and backend.device() == "cpu"
    if NAME == "torch":
        assert __import__("torch").get_num_threads() == 2, "the pinned thread count"
        assert __import__("torch").backends.mkldnn.enabled, "oneDNN's LSTM: torch's fastest on the CPU"
    elif NAME == "tensorflow":
        threading = __import__("tensorflow").config.threading
        assert (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()) == (2, 1)


def test_building_a_model_before_loading_a_backend_says_so(tlx, monkeypatch):
    monkeypatch.setattr(backend, "_loaded", None)
    with pytest.raises(RuntimeError, match=r"^call imdb_lstm\.backend\.load\(name\) before building a model$"):
        backend.tlx()


def test_asking_for_a_gpu_that_is_not_there_is_refused(tlx):
    entry = backend._entry
    with pytest.raises(PipelineError) as refused:
        backend._use_device(NAME, entry, "gpu")
    assert str(refused.value) == f"device gpu was asked for, but {NAME} sees no GPU: use device cpu or auto"
    backend._use_device(NAME, entry, "auto")
    assert backend.device() == "cpu"


def test_a_seed_gives_the_same_weights_and_another_seed_others(model, tlx):
    def weights(seed):
        backend.seed(seed)
        return weights_of(tlx, model.SentimentLSTM(30, 4, 3))
    first = weights(3)
    assert all((a == b).all() for a, b in zip(first, weights(3)))
    assert not all((a == b).all() for a, b in zip(first, weights(4)))
    # seeding also asks for deterministic kernels, where the framework has the switch
    if NAME == "torch":
        import torch
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    elif NAME == "tensorflow":
        from tensorflow.python.framework import config  # the public module has the switch, not the reading
        assert config.is_op_determinism_enabled()
    elif NAME == "mindspore":
        from mindspore.device_manager import DeviceManagerConf
        assert DeviceManagerConf.get_instance().is_deterministic_configured()


def test_no_grad_records_no_graph_and_set_trainable_switches_gradients(model, tlx):
    net = model.SentimentLSTM(30, 4, 3)
    ids = tlx.convert_to_tensor(np.ones((2, 5), np.int64))
    if NAME in ("tensorflow", "mindspore"):  # they record a graph only inside a step, and switch nothing
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


# --- the model -----------------------------------------------------------------------------------

CONFIGS = [{}, {"bidirectional": True}, {"num_layers": 3}, {"bidirectional": True, "num_layers": 2},
           {"pooling": "masked_mean_max"}, {"bidirectional": True, "pooling": "masked_mean_max", "dropout": 0.2},
           {"embedding_dropout": 0.5}]


@pytest.mark.parametrize("options", CONFIGS)
def test_parameter_count_is_the_real_models(model, options):
    net = model.SentimentLSTM(37, 8, 6, **options)
    assert model.parameter_count(net.config) == sum(int(np.prod(w.shape)) for w in net.all_weights)
    assert net.config == {"vocab_size": 37, "embedding_dim": 8, "hidden_size": 6, "bidirectional": False,
                          "num_layers": 1, "pooling": "mean", "dropout": 0.0, "trim_padding": False,
                          "embedding_dropout": 0.0, **options}


def test_parameter_count_by_hand():
    from imdb_lstm.model import parameter_count
    config = {"vocab_size": 37, "embedding_dim": 8, "hidden_size": 6, "bidirectional": False, "num_layers": 1,
              "pooling": "mean"}
    # embedding, LSTM gates (input, hidden and two biases), dense, classifier
    assert parameter_count(config) == 37 * 8 + 4 * 6 * (8 + 6 + 2) + (6 + 1) * 6 + (6 + 1) * 2
    two = {**config, "num_layers": 2, "bidirectional": True, "pooling": "masked_mean_max"}
    assert parameter_count(two) == (37 * 8 + 2 * 4 * 6 * (8 + 6 + 2) + 2 * 4 * 6 * (12 + 6 + 2)
                                    + (24 + 1) * 6 + (6 + 1) * 2)


def test_dropout_layers_exist_only_where_asked(model):
    assert model.SentimentLSTM(30, 4, 3).dropout is None
    net = model.SentimentLSTM(30, 4, 3, dropout=0.25)
    assert net.dropout is not None and net.lstm.dropout == 0.0, "one LSTM layer: nothing between layers"
    assert model.SentimentLSTM(30, 4, 3, num_layers=2, dropout=0.25).lstm.dropout == 0.25
    assert net.embedding_dropout is None, "dropout asks for none on the words' vectors"
    assert model.SentimentLSTM(30, 4, 3, embedding_dropout=0.25).embedding_dropout is not None


def test_embedding_dropout_drops_numbers_of_the_words_vectors_while_training_only(model, tlx):
    backend.seed(2)
    net = model.SentimentLSTM(30, 64, 3, embedding_dropout=0.5)
    spread_weights(tlx, net)  # a start with every ReLU at 0 would give equal logits whatever was dropped
    ids = tlx.convert_to_tensor(np.arange(1, 21).reshape(2, 10))
    vectors = tlx.convert_to_numpy(net.embedding(ids))
    net.set_train()
    dropped = tlx.convert_to_numpy(net.embedding_dropout(net.embedding(ids)))
    zeroed = dropped == 0
    assert 0.4 < zeroed.mean() < 0.6
    np.testing.assert_allclose(dropped[~zeroed], 2 * vectors[~zeroed], rtol=1e-6)  # the rest scaled by 1 / (1 - p)
    trained = [tlx.convert_to_numpy(net(ids)) for _ in range(2)]
    net.set_eval()
    evaluated = [tlx.convert_to_numpy(net(ids)) for _ in range(2)]
    assert not np.array_equal(*trained), "training: each call drops other numbers (no other dropout here)"
    np.testing.assert_array_equal(*evaluated)


def test_each_pooling_is_what_its_name_says(model, tlx):
    rng = np.random.default_rng(0)
    states = rng.normal(size=(3, 5, 4)).astype(np.float32)
    ids = np.array([[0, 0, 3, 4, 5], [6, 7, 8, 9, 1], [0, 0, 0, 0, 2]])
    words = (ids != 0)[..., None]
    masked_mean = (states * words).sum(1) / words.sum(1)
    expected = {"mean": states.mean(1), "max": states.max(1), "last": states[:, -1],
                "masked_mean": masked_mean,
                "masked_mean_max": np.concatenate([masked_mean, np.where(words, states, -np.inf).max(1)], 1)}
    for pooling, want in expected.items():
        net = model.SentimentLSTM(10, 4, 4, pooling=pooling)
        got = tlx.convert_to_numpy(net.pool(tlx.convert_to_tensor(states), tlx.convert_to_tensor(ids)))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=pooling)
    all_padding = np.zeros((1, 5), np.int64)  # no word at all: zeros, not a division by zero
    net = model.SentimentLSTM(10, 4, 4, pooling="masked_mean")
    pooled = net.pool(tlx.convert_to_tensor(states[:1]), tlx.convert_to_tensor(all_padding))
    assert (tlx.convert_to_numpy(pooled) == 0).all()


def test_the_forward_pass_gives_two_logits_per_review_for_every_option(model, tlx):
    ids = tlx.convert_to_tensor(np.random.default_rng(0).integers(0, 30, (3, 6)))
    for options in CONFIGS + [{"pooling": "last"}, {"pooling": "max"}]:
        net = model.SentimentLSTM(30, 4, 3, **options)
        assert tuple(net(ids).shape) == (3, 2), options
    wide = model.SentimentLSTM(30, 4, 3, bidirectional=True, pooling="masked_mean_max")
    assert tuple(wide.dense.all_weights[0].shape) in ((12, 3), (3, 12)), "2 directions × (mean, max) features"


def test_pretrained_vectors_set_the_embedding_and_must_fit_it(model, tlx):
    from imdb_lstm.training import start_from_vectors
    net = model.SentimentLSTM(30, 4, 3)
    vectors = np.arange(120, dtype=np.float32).reshape(30, 4)
    start_from_vectors(net, vectors)
    assert (tlx.convert_to_numpy(net.embedding.all_weights[0]) == vectors).all()
    with pytest.raises(PipelineError) as refused:
        start_from_vectors(net, vectors[:, :3])
    assert str(refused.value) == ("the pretrained vectors are (30, 3), the embedding (30, 4): rerun "
                                  "`dvc repro pretrain` with this params.yaml")


@pytest.fixture
def saved(model, tlx, tmp_path):
    backend.seed(1)
    net = model.SentimentLSTM(37, 8, 6, bidirectional=True, pooling="masked_mean_max")
    folder = tmp_path / "model"
    folder.mkdir()
    model.save_model(net, folder, vocabulary="abc123")
    return net, folder


def test_a_saved_model_loads_with_its_config_vocabulary_and_logits(model, tlx, saved):
    net, folder = saved
    info = json.loads((folder / "model.json").read_text())
    without = {key: value for key, value in net.config.items() if key != "embedding_dropout"}  # 0: left out
    assert info == {**without, "trained_on": backend.version(), "vocabulary": "abc123"}
    assert (folder / "model.json").read_text() == json.dumps(info, indent=2, sort_keys=True) + "\n"
    loaded = model.load_model(folder)
    assert loaded.config == net.config and loaded.vocabulary == "abc123"
    assert all((a == b).all() for a, b in zip(weights_of(tlx, net), weights_of(tlx, loaded)))
    ids = np.random.default_rng(0).integers(0, 37, (9, 6))
    net.set_eval()
    np.testing.assert_array_equal(model.predict_logits(loaded, ids), model.predict_logits(net, ids))
    loaded.set_train()  # loaded in eval mode: dropout off, which the equal logits above relied on
    edit = json.loads((folder / "model.json").read_text())
    del edit["vocabulary"], edit["trained_on"]
    (folder / "model.json").write_text(json.dumps(edit))
    assert model.load_model(folder).vocabulary is None, "a model saved before vocabularies were recorded"


def test_a_model_with_embedding_dropout_saves_and_loads_it(model, tmp_path):
    net = model.SentimentLSTM(37, 8, 6, embedding_dropout=0.3)
    model.save_model(net, tmp_path, vocabulary="abc123")
    assert json.loads((tmp_path / "model.json").read_text())["embedding_dropout"] == 0.3
    loaded = model.load_model(tmp_path)
    assert loaded.config == net.config and loaded.embedding_dropout is not None


MESSAGES = {  # the whole line each damage gets, with {folder} for the model folder
    "weights truncated": "{folder}/weights.npz is damaged",
    "weights missing": "no weights.npz in {folder}: retrain with `dvc repro train`",
    "weights of another model": "{folder}/weights.npz does not fit model.json: retrain with `dvc repro train`",
    "weights not float32": "{folder}/weights.npz is damaged (array 0 is float64, not float32): retrain with "
                           "`dvc repro train`",
    "weights NaN": "{folder}/weights.npz holds NaN or infinite weights: retrain with `dvc repro train`",
    "json a list": "{folder}/model.json is damaged (not a JSON object): retrain with `dvc repro train`",
    "json not json": "{folder}/model.json is damaged ('utf-8' codec can't decode byte 0xff in position 0: invalid "
                     "start byte): retrain with `dvc repro train`",
    "bad pooling": "{folder}/model.json: 'pooling' is 'sum'; it must be one of mean, masked_mean, max, "
                   "masked_mean_max, last",
    "weights with an extra array": "{folder}/weights.npz does not fit model.json: retrain with `dvc repro train`",
    "weights transposed": "{folder}/weights.npz does not fit model.json: retrain with `dvc repro train`",
    "unknown key": "{folder}/model.json: unknown key 'colour': it was not written by this project's train "
                   "stage; retrain with `dvc repro train`",
    "absurd sizes": "{folder}/weights.npz does not fit model.json: retrain with `dvc repro train`",
}


@pytest.mark.parametrize("how", CASES)
def test_a_bad_model_folder_is_refused_with_its_message(model, saved, tmp_path, how):
    folder = tmp_path / "copy"
    shutil.copytree(saved[1], folder)
    damage(folder, how)
    with pytest.raises(PipelineError) as refused:
        model.load_model(folder)
    assert CASES[how] in str(refused.value)
    if how in MESSAGES:
        assert str(refused.value).startswith(MESSAGES[how].format(folder=folder))
    if how.startswith("weights"):
        assert str(refused.value).endswith(": retrain with `dvc repro train`")
    if how == "weights cut inside an array":
        with pytest.raises(ValueError) as numpy_says:
            np.load(folder / "weights.npz")["0"]
        assert str(refused.value) == (f"{folder}/weights.npz is damaged ({numpy_says.value}): retrain with "
                                      "`dvc repro train`")


def test_a_folder_without_a_model_says_to_train_first(model, tmp_path):
    with pytest.raises(PipelineError, match="^no trained model in .*: run `dvc repro train` first$"):
        model.load_model(tmp_path)


def test_weights_whose_members_are_not_numbered_from_0_are_refused(model, saved):
    import zipfile
    net, folder = saved
    with zipfile.ZipFile(folder / "weights.npz", "a") as archive:
        archive.writestr("extra.npy", b"")
    with pytest.raises(PipelineError) as refused:
        model.load_model(folder)
    assert str(refused.value) == (f"{folder}/weights.npz is damaged (members ['0.npy', '1.npy', '2.npy', '3.npy', "
                                  "'4.npy'] are not 0.npy, 1.npy, ...): retrain with `dvc repro train`")


def test_weights_written_in_numpys_version_2_format_load(model, tlx, saved):
    """numpy writes format 2.0 when an array's header outgrows 1.0's: its header is read the 2.0 way."""
    import zipfile
    net, folder = saved
    weights = weights_of(tlx, net)
    with zipfile.ZipFile(folder / "weights.npz", "w") as archive:
        for i, array in enumerate(weights):
            with archive.open(f"{i}.npy", "w") as member:
                np.lib.format.write_array(member, array, version=(2, 0))
    assert all((a == b).all() for a, b in zip(weights_of(tlx, model.load_model(folder)), weights))


def test_predict_logits_is_the_same_in_any_batch_size_and_refuses_unknown_words(model, tlx):
    net = model.SentimentLSTM(30, 4, 3)
    spread_weights(tlx, net)
    net.set_eval()
    ids = np.random.default_rng(0).integers(0, 30, (11, 6))
    whole = model.predict_logits(net, ids)
    assert np.ptp(whole[:, 1] - whole[:, 0]) > 0.1, "the reviews get logits of their own"
    assert whole.shape == (11, 2) and whole.dtype == np.float64
    np.testing.assert_allclose(model.predict_logits(net, ids, batch_size=3), whole, atol=1e-6)
    np.testing.assert_allclose(whole[4], tlx.convert_to_numpy(net(tlx.convert_to_tensor(ids[4:5])))[0], atol=1e-6)
    padded = np.concatenate([np.zeros((11, 1), np.int64), ids], axis=1)  # padding that every review shares
    untrimmed = tlx.convert_to_numpy(net(tlx.convert_to_tensor(padded)))
    np.testing.assert_allclose(model.predict_logits(net, padded), untrimmed, atol=1e-5)  # a model without trim_padding
    assert np.abs(untrimmed - whole).max() > 1e-3, "it reads the padding: trimmed, its logits would differ"
    assert model.predict_logits(net, ids[:0]).shape == (0, 2)
    with pytest.raises(PipelineError) as refused:
        model.predict_logits(net, np.full((2, 3), 30))
    assert str(refused.value) == ("word ids reach 30, but the model knows 30 words: the prepared data changed "
                                  "since training; run `dvc repro`")
    model.predict_logits(net, np.full((2, 3), 29))  # the last known word


def test_with_trim_padding_each_review_is_scored_at_its_own_length(model, tlx):
    net = model.SentimentLSTM(30, 4, 8, pooling="last", trim_padding=True)
    spread_weights(tlx, net)
    net.set_eval()
    ids = np.array([[0, 0, 5, 6], [7, 8, 9, 10], [0, 0, 0, 11], [0, 3, 4, 12], [0, 0, 13, 14], [0, 0, 15, 16],
                    [0, 0, 0, 17], [1, 2, 3, 4], [0, 0, 0, 0]])
    ids = np.concatenate([ids, [[0, 0, 18, 19], [0, 0, 20, 21], [0, 0, 22, 23]]])  # six of length 2: three batches
    together, moved = model.predict_logits(net, ids, batch_size=2), []
    for row, logits in zip(ids, together):
        alone = tlx.convert_to_numpy(net(tlx.convert_to_tensor(row[row != 0][None] if row.any() else row[None, :1])))[0]
        np.testing.assert_allclose(logits, alone, atol=1e-5)
        padded = tlx.convert_to_numpy(net(tlx.convert_to_tensor(np.concatenate([[0], row])[None])))[0]
        moved.append(np.abs(padded - alone).max())
    assert np.min(moved) > 1e-3, "a step of padding more would show in every review's logits"


# --- the training step ---------------------------------------------------------------------------

def test_the_counting_loss_is_cross_entropy_and_counts_correct_predictions(tlx):
    from imdb_lstm.training import CountingLoss
    loss_fn = CountingLoss(tlx)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0]], np.float32)
    labels = np.array([0, 0, 1])
    loss = float(loss_fn(tlx.convert_to_tensor(logits), tlx.convert_to_tensor(labels)))
    shifted = logits - logits.max(1, keepdims=True)
    expected = -(shifted[range(3), labels] - np.log(np.exp(shifted).sum(1))).mean()
    assert loss == pytest.approx(expected, rel=1e-6)
    assert loss_fn.correct == 1
    loss_fn(tlx.convert_to_tensor(logits), tlx.convert_to_tensor(np.array([0, 1, 0])))
    assert loss_fn.correct == 4, "it adds up until train_epoch resets it"


ADVERSARIAL = (0.0, 0.1) if NAME != "mindspore" else (0.0,)  # params.py refuses it on mindspore


@pytest.mark.parametrize("adversarial", ADVERSARIAL)
def test_frozen_layers_stay_and_the_rest_trains(model, tlx, adversarial):
    from imdb_lstm.training import CountingLoss, make_step
    rng = np.random.default_rng(0)
    ids, labels = tlx.convert_to_tensor(rng.integers(1, 30, (8, 5))), tlx.convert_to_tensor(rng.integers(0, 2, 8))
    for frozen in ((), ("embedding",), ("embedding", "lstm")):
        net = model.SentimentLSTM(30, 4, 8)
        spread_weights(tlx, net)  # whatever the generator's state: a start whose ReLUs all sit at 0 trains nothing
        embedding, lstm = len(net.embedding.all_weights), len(net.lstm.all_weights)
        before = weights_of(tlx, net)
        step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), lr=0.1,
                         frozen=[getattr(net, name) for name in frozen], adversarial=adversarial)
        net.set_train()
        step(ids, labels)
        after = weights_of(tlx, net)
        layer_of = ["embedding"] * embedding + ["lstm"] * lstm + ["head"] * (len(before) - embedding - lstm)
        for layer, old, new in zip(layer_of, before, after):
            assert (old == new).all() == (layer in frozen), layer
        if NAME in ("torch", "paddle"):  # the others switch nothing: a step lists the weights it trains
            assert [records_gradient(w) for w in net.all_weights] == [layer not in frozen for layer in layer_of]


class Progress:
    def __init__(self):
        self.seen, self.postfix = [], None

    def update(self, count):
        self.seen.append(count)

    def set_postfix(self, **values):
        self.postfix = values


@pytest.mark.parametrize("adversarial, virtual", [(a, 0.0) for a in ADVERSARIAL] + [(0.0, a) for a in ADVERSARIAL if a])
def test_an_epoch_returns_its_mean_loss_and_accuracy(model, tlx, adversarial, virtual):
    """On the labelled reviews as they are: an adversarial step's pushed loss, and the unlabelled reviews'
    divergence, are not in the figures."""
    from imdb_lstm.training import CountingLoss, make_step, train_epoch, unlabelled_batches
    net = model.SentimentLSTM(30, 4, 3)
    loss_fn = CountingLoss(tlx)
    step = make_step(tlx, net, loss_fn, list(net.trainable_weights), lr=0.0, adversarial=adversarial,
                     virtual_adversarial=virtual)  # the weights stay
    net.set_train()
    rng = np.random.default_rng(0)
    ids, labels = rng.integers(0, 30, (10, 6)), rng.integers(0, 2, 10)
    batches = [np.arange(0, 4), np.arange(4, 10)]
    logits = model.predict_logits(net, ids)
    shifted = logits - logits.max(1, keepdims=True)
    losses = -(shifted[range(10), labels] - np.log(np.exp(shifted).sum(1)))
    progress = Progress()
    unlabelled = virtual and unlabelled_batches(rng.integers(2, 30, (5, 6)), 2, 3, rng, False, 4)
    loss, accuracy = train_epoch(step, loss_fn, tlx, ids, labels, batches, False, progress, unlabelled)
    assert loss == pytest.approx(losses.mean(), rel=1e-5), "each batch's mean loss weighted by its size"
    assert accuracy == (logits.argmax(1) == labels).mean()
    assert progress.seen == [4, 6] and progress.postfix == {"loss": f"{loss:.4f}"}


def test_the_weight_average_is_the_debiased_mean_of_the_weights_after_each_step(model, tlx):
    """Each step's weights count `decay` times the next's; the weights before the first step not at all.
    in_place puts the average into the net for its block only."""
    from imdb_lstm.training import CountingLoss, WeightAverage, make_step, train_epoch
    net = model.SentimentLSTM(30, 4, 3)
    spread_weights(tlx, net)
    loss_fn = CountingLoss(tlx)
    step = make_step(tlx, net, loss_fn, list(net.trainable_weights), lr=0.1)
    after = []

    def recording_step(*batch):
        step(*batch)
        after.append(weights_of(tlx, net))

    net.set_train()
    rng = np.random.default_rng(0)
    ids, labels = rng.integers(1, 30, (12, 5)), rng.integers(0, 2, 12)
    decay = 0.5  # far from 1: a wrong weighting or a start that counts shows well above rounding
    average = WeightAverage(tlx, net, decay)
    train_epoch(recording_step, loss_fn, tlx, ids, labels, [np.arange(i, i + 4) for i in (0, 4, 8)], False,
                Progress(), average=average)
    factors = np.array([decay ** 2, decay, 1.0])
    for i, value in enumerate(average.values):
        steps = np.stack([weights[i].astype(np.float64) for weights in after])
        expected = np.tensordot(factors, steps, axes=1) / factors.sum()
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)
    own = weights_of(tlx, net)
    assert any(not np.array_equal(a, b) for a, b in zip(own, average.values))
    with average.in_place():
        assert all(np.array_equal(a, b) for a, b in zip(weights_of(tlx, net), average.values))
    assert all(np.array_equal(a, b) for a, b in zip(weights_of(tlx, net), own)), "the net's own weights are back"


def test_a_step_is_adversarial_only_when_asked(model, tlx):
    from imdb_lstm.training import AdversarialLoss, CountingLoss, make_step
    rng = np.random.default_rng(2)
    ids, labels = tlx.convert_to_tensor(rng.integers(1, 30, (8, 5))), tlx.convert_to_tensor(rng.integers(0, 2, 8))
    moved = []
    for plain in (True, False):
        net = model.SentimentLSTM(30, 4, 8)
        spread_weights(tlx, net)
        if plain:
            step = tlx.model.TrainOneStep(tlx.model.WithLoss(net, CountingLoss(tlx)), tlx.optimizers.Adam(lr=0.1),
                                          list(net.trainable_weights))
        else:
            step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), lr=0.1)
        net.set_train()
        step(ids, labels)
        moved.append(weights_of(tlx, net))
    for a, b in zip(*moved):
        np.testing.assert_array_equal(a, b)
    if NAME != "mindspore":
        step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), lr=0.1, adversarial=0.25)
        assert isinstance(step.net_with_train.net_with_loss, AdversarialLoss)
        assert step.net_with_train.net_with_loss.epsilon == 0.25


def record_pushes(tlx, adversarial_loss):
    """Keep each (gradient, push) that `adversarial_loss` makes, as arrays."""
    made, push = [], adversarial_loss.push

    def recorded(gradient, vectors):
        made.append((tlx.convert_to_numpy(gradient), tlx.convert_to_numpy(push(gradient, vectors))))
        return push(gradient, vectors)

    adversarial_loss.push = recorded
    return made


def test_an_adversarial_step_descends_the_loss_plus_the_loss_at_the_pushed_vectors(model, tlx):
    """With plain gradient descent at rate 1 a step moves each weight by minus its gradient: the adversarial
    step's move must be the sum of a plain step's and of a step on the loss at the pushed vectors (the push
    taken as a constant, as it is in the step). A push subtracted, or a loss counted twice or not at all,
    moves the weights elsewhere."""
    if NAME == "mindspore":  # params.py refuses it there (no skip: test_backends.py wants none on a backend)
        assert backends.get(NAME).adversarial_objective is None
        return
    from imdb_lstm.training import AdversarialLoss, CountingLoss
    rng = np.random.default_rng(0)
    ids, labels = tlx.convert_to_tensor(rng.integers(1, 30, (8, 5))), tlx.convert_to_tensor(rng.integers(0, 2, 8))

    def move(net_with_loss):
        net = net_with_loss.net
        before = weights_of(tlx, net)
        step = tlx.model.TrainOneStep(net_with_loss, tlx.optimizers.SGD(lr=1.0), list(net.trainable_weights))
        net.set_train()
        step(ids, labels)
        return [after - old for after, old in zip(weights_of(tlx, net), before)]

    class Plain:
        def __init__(self, push=None):
            self.net = model.SentimentLSTM(30, 4, 8, pooling="masked_mean_max")
            spread_weights(tlx, self.net)  # the same start for every net
            self.push = push

        def __call__(self, ids, labels):
            vectors = self.net.embed(ids)
            if self.push is not None:
                vectors = vectors + tlx.convert_to_tensor(self.push)
            return tlx.losses.softmax_cross_entropy_with_logits(self.net.read(vectors, ids), labels)

    adversarial = AdversarialLoss(tlx, Plain().net, CountingLoss(tlx), 0.5)
    made = record_pushes(tlx, adversarial)
    moved = move(adversarial)
    expected = [a + b for a, b in zip(move(Plain()), move(Plain(made[0][1])))]
    for got, want in zip(moved, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(move(Plain()), expected)) > 1e-3, "the push moved the weights"


def test_the_adversarial_push_has_its_size_and_raises_the_loss_more_than_a_random_one(model, tlx):
    if NAME == "mindspore":  # params.py refuses it there (no skip: test_backends.py wants none on a backend)
        assert backends.get(NAME).adversarial_objective is None
        return
    from imdb_lstm.training import CountingLoss, make_step
    rng = np.random.default_rng(1)
    ids, labels = rng.integers(1, 30, (6, 7)), rng.integers(0, 2, 6)
    ids[0, :3] = 0  # padding: it is read, and pushed, as in training without trim_padding
    net = model.SentimentLSTM(30, 4, 8, pooling="masked_mean_max")
    spread_weights(tlx, net)
    step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), lr=0.0, adversarial=0.05)
    made = record_pushes(tlx, step.net_with_train.net_with_loss)
    net.set_train()
    step(tlx.convert_to_tensor(ids), tlx.convert_to_tensor(labels))
    vectors = tlx.convert_to_numpy(net.embed(tlx.convert_to_tensor(ids)))
    gradient, pushed = made[0]
    assert pushed.shape == vectors.shape
    norms = np.sqrt((pushed.astype(np.float64) ** 2).sum((1, 2)))
    assert norms == pytest.approx(0.05 * np.sqrt((vectors.astype(np.float64) ** 2).sum((1, 2))), rel=1e-4)
    # along each review's whole gradient (not each word's): one factor a review
    factors = (pushed * gradient).sum((1, 2)) / (gradient * gradient).sum((1, 2))
    np.testing.assert_allclose(pushed, factors[:, None, None] * gradient, rtol=1e-4, atol=1e-7)

    def review_losses(vectors):
        logits = tlx.convert_to_numpy(net.read(tlx.convert_to_tensor(vectors.astype(np.float32)),
                                               tlx.convert_to_tensor(ids))).astype(np.float64)
        shifted = logits - logits.max(1, keepdims=True)
        return np.log(np.exp(shifted).sum(1)) - shifted[range(len(ids)), labels]

    clean = review_losses(vectors)
    noise = rng.normal(size=vectors.shape)
    noise *= (norms / np.sqrt((noise ** 2).sum((1, 2))))[:, None, None]
    assert (review_losses(vectors + pushed) > review_losses(vectors + noise)).all()
    assert (review_losses(vectors + pushed) > clean).all()


def test_unlabelled_batches_are_trimmed_seeded_and_come_with_a_unit_direction_off_the_padding():
    from imdb_lstm.training import unlabelled_batches
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 30, (5, 9))
    ids[:, :3] = 0  # padding shared by every review: trimmed
    ids[1, :6] = 0
    made = list(unlabelled_batches(ids, 4, 2, np.random.default_rng(7), True, 3))
    assert len(made) == 4, "three batches make one pass over five reviews; the fourth starts the next pass"
    assert sorted(len(rows) for rows, _ in made[:3]) == [1, 2, 2]
    for rows, direction in made:
        assert direction.shape == (*rows.shape, 3) and direction.dtype == np.float32
        assert rows.shape[1] < 9 or (rows[:, :3] != 0).any(), "the shared padding is gone"
        assert (direction[rows == 0] == 0).all() and (direction[rows != 0] != 0).all()
        np.testing.assert_allclose(np.sqrt((direction.astype(np.float64) ** 2).sum((1, 2))), 1.0, rtol=1e-6)
    again = list(unlabelled_batches(ids, 4, 2, np.random.default_rng(7), True, 3))
    for (rows, direction), (rows_again, direction_again) in zip(made, again):
        np.testing.assert_array_equal(rows, rows_again)
        np.testing.assert_array_equal(direction, direction_again)
    seen = np.concatenate([rows[:, -1] for rows, _ in made[:3]])
    assert sorted(seen) == sorted(ids[:, -1]), "the first pass holds every review once"


def virtual_setup(tlx, seed=0):
    """(ids, labels, unlabelled ids, their directions) as tensors: what a virtual adversarial step takes."""
    from imdb_lstm.training import unlabelled_batches
    rng = np.random.default_rng(seed)
    ids, labels, unlabelled = rng.integers(1, 30, (8, 5)), rng.integers(0, 2, 8), rng.integers(2, 30, (6, 7))
    unlabelled[0, :2] = 0
    (_, direction), = unlabelled_batches(unlabelled, 1, 6, rng, False, 4)
    return [tlx.convert_to_tensor(a) for a in (ids, labels, unlabelled, direction)]


def divergences(tlx, net, unlabelled, vectors, answer_vectors):
    """Each unlabelled review's KL(answer at answer_vectors || answer at vectors), in float64 numpy."""
    def log_probabilities(v):
        logits = tlx.convert_to_numpy(net.read(tlx.convert_to_tensor(v.astype(np.float32)), unlabelled))
        shifted = logits.astype(np.float64) - logits.max(1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    p, q = log_probabilities(answer_vectors), log_probabilities(vectors)
    return (np.exp(p) * (p - q)).sum(1)


def test_a_virtual_adversarial_step_descends_the_labelled_loss_plus_the_divergences_at_its_two_points(model, tlx):
    """At SGD rate 1 the step's move must be a plain step's plus one on the mean KL divergence of the
    unlabelled reviews' answers at the power iteration's start and one at the pushed vectors (the model's
    own answer, the start and the push taken as constants). The divergence subtracted, taken from the pushed
    answer instead of the model's own, or counted twice or not at all moves the weights elsewhere."""
    if NAME == "mindspore":  # params.py refuses it there (no skip: test_backends.py wants none on a backend)
        assert backends.get(NAME).adversarial_objective is None
        return
    from imdb_lstm.training import FINITE_STEP, CountingLoss, VirtualAdversarialLoss
    ids, labels, unlabelled, direction = virtual_setup(tlx)

    def new_net():
        net = model.SentimentLSTM(30, 4, 8, pooling="masked_mean_max")
        spread_weights(tlx, net, seed=5)  # the same start for every net
        return net

    def move(net, loss, *inputs):
        before = weights_of(tlx, net)
        net.set_train()
        tlx.model.TrainOneStep(loss, tlx.optimizers.SGD(lr=1.0), list(net.trainable_weights))(*inputs)
        return [after - old for after, old in zip(weights_of(tlx, net), before)]

    net = new_net()
    virtual = VirtualAdversarialLoss(tlx, net, tlx.model.WithLoss(net, CountingLoss(tlx)), 0.5)
    made = record_pushes(tlx, virtual)
    moved = move(net, virtual, ids, labels, unlabelled, direction)
    vectors = tlx.convert_to_numpy(new_net().embed(unlabelled)).astype(np.float64)
    offset = FINITE_STEP * np.sqrt((vectors ** 2).sum((1, 2), keepdims=True)) * tlx.convert_to_numpy(direction)

    clean = tlx.convert_to_numpy(new_net()(unlabelled)).astype(np.float64)
    clean -= clean.max(1, keepdims=True)
    answer = clean - np.log(np.exp(clean).sum(1, keepdims=True))  # the model's own, before the step

    class Divergence:  # the mean KL divergence from `answer` at the vectors moved by a constant `offset`
        def __init__(self, offset):
            self.net, self.offset = new_net(), tlx.convert_to_tensor(offset.astype(np.float32))

        def __call__(self, unlabelled, _):
            logits = tlx.cast(self.net.read(self.net.embed(unlabelled) + self.offset, unlabelled), tlx.float64)
            top = tlx.reduce_max(logits, axis=1, keepdims=True)
            log_q = logits - top - tlx.log(tlx.reduce_sum(tlx.exp(logits - top), axis=1, keepdims=True))
            kl = tlx.reduce_sum(tlx.convert_to_tensor(np.exp(answer)) * (tlx.convert_to_tensor(answer) - log_q), axis=1)
            return tlx.cast(tlx.reduce_mean(kl), tlx.float32)

    plain_net = new_net()
    plain = move(plain_net, tlx.model.WithLoss(plain_net, CountingLoss(tlx)), ids, labels)
    at_start, at_pushed = Divergence(offset), Divergence(offset + made[0][1])
    expected = [a + b + c for a, b, c in zip(plain, move(at_start.net, at_start, unlabelled, labels),
                                             move(at_pushed.net, at_pushed, unlabelled, labels))]
    for got, want in zip(moved, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(plain, expected)) > 1e-3, "the unlabelled reviews moved the weights"


def test_the_virtual_adversarial_push_has_its_size_and_changes_the_answer_more_than_a_random_one(model, tlx):
    if NAME == "mindspore":  # params.py refuses it there (no skip: test_backends.py wants none on a backend)
        assert backends.get(NAME).adversarial_objective is None
        return
    from imdb_lstm.training import CountingLoss, make_step
    ids, labels, unlabelled, direction = virtual_setup(tlx, seed=1)
    net = model.SentimentLSTM(30, 4, 8, pooling="masked_mean_max")
    spread_weights(tlx, net)
    step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), lr=0.0, virtual_adversarial=0.05)
    made = record_pushes(tlx, step.net_with_train.net_with_loss)
    net.set_train()
    step(ids, labels, unlabelled, direction)
    assert len(made) == 1, "one push a step, for the unlabelled reviews (no adversarial push unless asked)"
    vectors = tlx.convert_to_numpy(net.embed(unlabelled)).astype(np.float64)
    gradient, pushed = made[0]
    assert pushed.shape == vectors.shape
    norms = np.sqrt((pushed.astype(np.float64) ** 2).sum((1, 2)))
    assert norms == pytest.approx(0.05 * np.sqrt((vectors ** 2).sum((1, 2))), rel=1e-3)
    factors = (pushed * gradient).sum((1, 2)) / (gradient * gradient).sum((1, 2))
    np.testing.assert_allclose(pushed, factors[:, None, None] * gradient, rtol=1e-4, atol=1e-7)
    noise = np.random.default_rng(4).normal(size=vectors.shape)
    noise *= (norms / np.sqrt((noise ** 2).sum((1, 2))))[:, None, None]
    pushed_away = divergences(tlx, net, unlabelled, vectors + pushed, vectors)
    assert (pushed_away > divergences(tlx, net, unlabelled, vectors + noise, vectors)).all()
    assert (pushed_away > 1e-6).all(), "every review's answer moved"


def test_a_loss_that_is_not_a_number_stops_training_with_the_fix(model, tlx):
    from imdb_lstm.training import CountingLoss, make_step, train_epoch
    net = model.SentimentLSTM(30, 4, 3)
    # the last layer: a NaN further down can vanish (paddle's ReLU gives 0 for NaN)
    tlx.files.assign_weights([np.full((3, 2), np.nan, np.float32), np.zeros(2, np.float32)], net.classify)
    loss_fn = CountingLoss(tlx)
    step = make_step(tlx, net, loss_fn, list(net.trainable_weights), lr=0.001)
    with pytest.raises(PipelineError, match=r"^the training loss became nan: lower `lr` in params.yaml$"):
        train_epoch(step, loss_fn, tlx, np.ones((4, 3), np.int64), np.zeros(4, np.int64), [np.arange(4)], False,
                    Progress())


def test_a_stop_signal_ends_the_epoch_before_the_next_batch(model, tlx, monkeypatch):
    from imdb_lstm.training import CountingLoss, make_step, train_epoch
    net = model.SentimentLSTM(30, 4, 3)
    loss_fn = CountingLoss(tlx)
    step = make_step(tlx, net, loss_fn, list(net.trainable_weights), lr=0.001)
    monkeypatch.setattr(errors, "_interrupted", True)
    progress = Progress()
    with pytest.raises(KeyboardInterrupt):
        train_epoch(step, loss_fn, tlx, np.ones((4, 3), np.int64), np.zeros(4, np.int64), [np.arange(4)], False,
                    progress)
    assert progress.seen == []


def test_trimmed_batches_train_on_the_words_only(model, tlx):
    from imdb_lstm.training import CountingLoss, make_step, train_epoch
    net = model.SentimentLSTM(30, 4, 3, pooling="mean", trim_padding=True)
    spread_weights(tlx, net)  # so that a padding step moves the loss
    loss_fn = CountingLoss(tlx)
    step = make_step(tlx, net, loss_fn, list(net.trainable_weights), lr=0.0)
    ids = np.array([[0, 0, 3, 4], [0, 5, 6, 7]])
    loss, _ = train_epoch(step, loss_fn, tlx, ids, np.array([0, 1]), [np.arange(2)], True, Progress())

    def loss_of(rows):
        logits = tlx.convert_to_numpy(net(tlx.convert_to_tensor(rows)))
        shifted = logits - logits.max(1, keepdims=True)
        return -(shifted[[0, 1], [0, 1]] - np.log(np.exp(shifted).sum(1))).mean()
    assert loss == pytest.approx(loss_of(ids[:, 1:]), rel=1e-5)
    assert loss != pytest.approx(loss_of(ids), rel=1e-3), "untrimmed, the loss would be another"
    untrimmed, _ = train_epoch(step, loss_fn, tlx, ids, np.array([0, 1]), [np.arange(2)], False, Progress())
    assert untrimmed == pytest.approx(loss_of(ids), rel=1e-5), "without trim the rows go in as they are"


# --- the language model ----------------------------------------------------------------------------

WORDS = ["<pad>", "<unk>", "great", "film", "awful", "plot", "the"]


@pytest.fixture
def language_model(tlx, model):
    import imdb_lstm.language_model as language_model
    return language_model


@pytest.fixture
def saved_lm(language_model, tmp_path):
    from imdb_lstm.text import words_sha256
    backend.seed(3)
    net = language_model.LanguageModel(len(WORDS), 4, 3, 1, output_words=5)
    folder = tmp_path / "lm"
    folder.mkdir()
    language_model.save_lm(net, folder, words_sha256=words_sha256(WORDS))
    return folder, net


def test_the_lm_is_saved_with_its_config_and_vocabulary(language_model, saved_lm):
    from imdb_lstm.text import words_sha256
    folder, net = saved_lm
    info = {**net.config, "trained_on": backend.version(), "words_sha256": words_sha256(WORDS)}
    assert (folder / "lm.json").read_text() == json.dumps(info, indent=2, sort_keys=True) + "\n"
    assert info["vocab_size"] == len(WORDS) and info["output_words"] == 5


def test_the_lm_gives_each_word_logits_over_its_output_words(language_model, tlx):
    net = language_model.LanguageModel(len(WORDS), 4, 3, 2, output_words=5)
    assert [tuple(w.shape) for w in net.embedding.all_weights + net.output.all_weights] == [(7, 4), (3, 5), (5,)]
    assert len(net.lstm.all_weights) == 8, "two layers of 4 tensors each, all there before the first batch"
    net.set_eval()
    ids = np.random.default_rng(0).integers(0, len(WORDS), (2, 6))
    logits = tlx.convert_to_numpy(net(tlx.convert_to_tensor(ids))).reshape(2, 6, 5)
    changed = ids.copy()
    changed[0, 3] = (ids[0, 3] + 1) % len(WORDS)
    after = tlx.convert_to_numpy(net(tlx.convert_to_tensor(changed))).reshape(2, 6, 5)
    # row by row, each step from the words up to it: a later word changes neither the earlier steps nor the other row
    np.testing.assert_array_equal(after[0, :3], logits[0, :3])
    np.testing.assert_array_equal(after[1], logits[1])
    assert not np.allclose(after[0, 3:], logits[0, 3:])


def test_the_classifier_takes_the_lms_embedding_and_lstm(model, tlx, language_model, saved_lm):
    folder, lm = saved_lm
    net = model.SentimentLSTM(len(WORDS), 4, 3)
    head = weights_of(tlx, net)[-4:]
    language_model.start_from_lm(net, folder, WORDS)
    shared = len(lm.embedding.all_weights) + len(lm.lstm.all_weights)
    for mine, theirs in zip(weights_of(tlx, net)[:shared], weights_of(tlx, lm)[:shared], strict=True):
        assert (mine == theirs).all()
    assert all((a == b).all() for a, b in zip(weights_of(tlx, net)[-4:], head))  # the rest is as it was


@pytest.mark.parametrize("how, message", [
    ("missing", "no language model in {folder}: run `dvc repro lm` with lm.use true"),
    ("other words", "the language model in {folder} was trained on another vocabulary: rerun `dvc repro lm`"),
    ("wider", "the language model in {folder} (vocab_size 7, embedding_dim 4, hidden_size 3, num_layers 1) does "
     "not fit the classifier (vocab_size 7, embedding_dim 4, hidden_size 5, num_layers 1, bidirectional false): the "
     "classifier must have its sizes and read one way; rerun `dvc repro lm` with this params.yaml"),
    ("bidirectional", "the language model in {folder} (vocab_size 7, embedding_dim 4, hidden_size 3, num_layers 1) "
     "does not fit the classifier (vocab_size 7, embedding_dim 4, hidden_size 3, num_layers 1, bidirectional true)"),
    ("not JSON", "{folder}/lm.json is damaged (Expecting property name enclosed in double quotes: line 1 column 2 "
     "(char 1)): rerun `dvc repro lm`"),
    ("weights of another shape", "{folder}/weights.npz does not fit lm.json: rerun `dvc repro lm`"),
    ("NaN weights", "{folder}/weights.npz holds NaN or infinite weights: rerun `dvc repro lm`"),
    ("weights not a zip", "{folder}/weights.npz is damaged (File is not a zip file): rerun `dvc repro lm`"),
])
def test_a_language_model_that_does_not_fit_is_refused(model, tlx, language_model, saved_lm, how, message):
    from imdb_lstm.files import write_npz
    folder, lm = saved_lm
    words, options = WORDS, {}
    if how == "missing":
        shutil.rmtree(folder)
    elif how == "other words":
        words = WORDS[:-1] + ["a"]
    elif how == "wider":
        options = {"hidden_size": 5}
    elif how == "bidirectional":
        options = {"bidirectional": True}
    elif how == "not JSON":
        (folder / "lm.json").write_text("{")
    elif how == "weights not a zip":
        (folder / "weights.npz").write_bytes(b"PK")
    else:
        weights = weights_of(tlx, lm)
        weights[1 if how == "weights of another shape" else 0] = (weights[1][:-1] if how == "weights of another shape"
                                                                  else weights[0] * np.nan)
        write_npz(folder / "weights.npz", weights)
    net = model.SentimentLSTM(len(WORDS), 4, options.pop("hidden_size", 3), **options)
    with pytest.raises(PipelineError) as error:
        language_model.start_from_lm(net, folder, words)
    assert str(error.value).startswith(message.format(folder=folder))


# --- predict -------------------------------------------------------------------------------------

@pytest.fixture
def trained(model, tlx, tmp_path):
    """A model folder and the vocab.json it was 'trained' with: random weights, with the bias set so that
    "great film" comes out positive and "awful plot twist" negative."""
    from imdb_lstm.files import sha256_file, write_json
    vocab = tmp_path / "vocab.json"
    write_json(vocab, {"encoding": {"seq_len": 6, "truncate": "pre", "pad": "pre"},
                       "words": ["<pad>", "<unk>", "great", "film", "awful", "plot"]})
    net = model.SentimentLSTM(6, 4, 3)
    spread_weights(tlx, net, seed=7)
    net.set_eval()
    margins = np.diff(model.predict_logits(net, np.array(REVIEW_IDS)), axis=1)[:, 0]
    assert margins[0] > margins[1] + 0.2, "the seed must tell the two reviews apart"
    kernel, bias = weights_of(tlx, net.classify)
    tlx.files.assign_weights([kernel, bias + np.array([0, -margins.mean()], np.float32)], net.classify)
    folder = tmp_path / "model"
    folder.mkdir()
    model.save_model(net, folder, vocabulary=sha256_file(vocab))
    return ["--model", str(folder), "--vocab", str(vocab), "--backend", NAME], net


REVIEWS = ["great film", "awful plot twist"]
REVIEW_IDS = [[0, 0, 0, 0, 2, 3], [0, 0, 0, 4, 5, 1]]  # as vocab.json's words and encoding give them


def expected_lines(model, net, reviews, ids):
    from imdb_lstm.metrics import log_softmax
    net.set_eval()
    positive = np.exp(log_softmax(model.predict_logits(net, np.array(ids)))[:, 1])
    return [("positive" if p > 0.5 else "negative", round(float(max(p, 1 - p)), 4), review)
            for p, review in zip(positive, reviews)]


def test_predict_prints_a_label_and_its_probability_per_review(model, trained, capsys):
    from imdb_lstm import predict
    options, net = trained
    predict.main([*REVIEWS, *options])
    lines = capsys.readouterr().out.splitlines()
    expected = expected_lines(model, net, REVIEWS, REVIEW_IDS)
    assert [label for label, _, _ in expected] == ["positive", "negative"]
    assert lines == [f"{label:8} {probability:.4f}  {review}" for label, probability, review in expected]
    predict.main(["--json", *REVIEWS, *options])
    assert capsys.readouterr().out == json.dumps([{"label": label, "probability": probability, "review": review}
                                                  for label, probability, review in expected], indent=2) + "\n"


def test_predict_calls_an_even_review_negative(model, tlx, trained, capsys):
    from imdb_lstm import predict
    options, net = trained
    tlx.files.assign_weights([np.zeros((3, 2), np.float32), np.zeros(2, np.float32)], net.classify)
    model.save_model(net, options[1], vocabulary=model.load_model(options[1]).vocabulary)
    predict.main(["great film", *options])
    assert capsys.readouterr().out == "negative 0.5000  great film\n", "positive only above one half"


def test_predict_reads_a_file_or_stdin_one_review_a_line(trained, tmp_path, capsys, monkeypatch):
    import io
    from imdb_lstm import predict
    options, _ = trained
    reviews = tmp_path / "reviews.txt"
    reviews.write_bytes(b"great film\n\n  \nawful \xff plot\n")
    predict.main(["--file", str(reviews), *options])
    assert [line.split("  ", 1)[1] for line in capsys.readouterr().out.splitlines()] == ["great film",
                                                                                         "awful \ufffd plot"]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"film\n\xffplot\n")))
    predict.main(options)
    assert [line.split("  ", 1)[1] for line in capsys.readouterr().out.splitlines()] == ["film", "\ufffdplot"]
    # an argument the locale could not decode (Python keeps its bytes as surrogates)
    predict.main(["great \udcff film", *options])
    assert capsys.readouterr().out.endswith("  great \ufffd film\n")


def test_predict_prints_what_the_terminal_cannot_show_as_question_marks(trained, monkeypatch):
    import io
    from imdb_lstm import predict
    options, _ = trained
    terminal = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(terminal, encoding="ascii"))
    predict.main(["great film \u00e9t\u00e9", *options])
    sys.stdout.flush()
    assert terminal.getvalue().decode("ascii").endswith("  great film ?t?\n")


def test_predict_refuses_with_one_line_what_it_cannot_use(trained, tmp_path, monkeypatch):
    import io
    from imdb_lstm import predict
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\n  \n")))  # blank lines: no review
    from imdb_lstm.files import write_json
    options, _ = trained
    folder, vocab = options[1], Path(options[3])
    cases = [
        ([], "no review to classify: give one as an argument, with --file, or on stdin"),
        (["--file", str(tmp_path / "none.txt")], f"cannot read {tmp_path / 'none.txt'}: No such file or directory"),
        (["x", "--vocab", str(tmp_path / "none.json")],
         f"no vocabulary at {tmp_path / 'none.json'}: run `dvc repro` (or `dvc pull`) first"),
    ]
    other = tmp_path / "other.json"
    write_json(other, {"encoding": {"seq_len": 6, "truncate": "pre", "pad": "pre"}, "words": ["<pad>", "<unk>", "x"]})
    cases.append((["x", "--vocab", str(other)], f"{other} is not the vocabulary {folder} was trained with: run "
                                                 "`dvc repro`, or pass that model's --vocab"))
    not_prepares = "is not a vocabulary written by `dvc repro prepare`"
    for name, content, why in [
            ("word.json", {"words": ["a", 1], "encoding": {"seq_len": 6, "truncate": "pre", "pad": "pre"}},
             f"{{bad}} {not_prepares} (a word that is not a string)"),
            ("seq_len.json", {"words": ["a"], "encoding": {"seq_len": 0, "truncate": "pre", "pad": "pre"}},
             "{bad}: 'encoding.seq_len' is 0; it must be an integer from 1 to 5000"),
            ("encoding.json", {"words": ["a"]}, f"{{bad}} {not_prepares} ('encoding')")]:
        bad = tmp_path / name
        write_json(bad, content)
        cases.append((["x", "--vocab", str(bad)], why.format(bad=bad)))
    for argv, message in cases:
        if "--vocab" not in argv:
            argv = [*argv, "--vocab", str(vocab)]
        with pytest.raises(PipelineError) as refused:
            predict.main([*argv, "--model", folder, "--backend", NAME])
        assert str(refused.value) == message, argv


def test_predict_options_their_defaults_and_their_help(capsys, monkeypatch):
    from imdb_lstm import predict
    assert vars(predict.parse_args([])) == {"reviews": [], "file": None, "json": False, "backend": "torch",
                                           "device": "cpu", "model": Path("data/model"),
                                           "vocab": Path("data/prepared/vocab.json")}
    given = predict.parse_args(["a b", "c", "--file", "in.txt", "--json", "--backend", "paddle", "--device", "auto",
                                "--model", "m", "--vocab", "v.json"])
    assert vars(given) == {"reviews": ["a b", "c"], "file": Path("in.txt"), "json": True, "backend": "paddle",
                           "device": "auto", "model": Path("m"), "vocab": Path("v.json")}
    for option, value in [("--backend", "mxnet"), ("--device", "tpu")]:
        with pytest.raises(SystemExit):
            predict.parse_args([option, value])
        assert f"argument {option}: invalid choice: '{value}'" in capsys.readouterr().err
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as done:
        predict.parse_args(["--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # line breaks depend on the terminal
    for line in ["usage: python -m imdb_lstm.predict [-h]",
                 "Classify new reviews with the trained model: `python -m imdb_lstm.predict \"What a film!\"`.",
                 "reviews review texts (default: read --file or stdin)",
                 "--file FILE a text file with one review per line",
                 "--json print a JSON list instead of lines",
                 "--backend {torch,paddle,tensorflow,mindspore} where to run (default: torch)",
                 "--device {cpu,gpu,auto} cpu, gpu or auto (default: cpu)",
                 "--model MODEL trained model folder",
                 "--vocab VOCAB vocabulary file"]:
        assert line in shown
    assert "Reviews come from" not in shown, "the description is the docstring's first line"
