"""Every backend runs the same model: same weights give the same logits, saved weights cross over."""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import BACKENDS, IN_PROCESS_FILES, ROOT, require, run_backend

from imdb_lstm import backends
from imdb_lstm.errors import PipelineError


@pytest.mark.parametrize("name", backends.NAMES)
def test_every_backend_module_has_the_whole_interface_and_nothing_imports_its_framework_early(name):
    import importlib

    entry = importlib.import_module(f"imdb_lstm.backends.{name}")
    assert [item for item in backends.INTERFACE if not hasattr(entry, item)] == []
    if name != "torch":  # the tests' own process may hold torch already
        assert entry.PACKAGE not in sys.modules, "imported before its kernel pins could be set"


def test_one_dispatch_refuses_an_unknown_backend_and_names_the_file_that_installs_a_missing_one(monkeypatch):
    with pytest.raises(PipelineError, match="unknown backend 'mxnet': use one of torch, paddle, tensorflow, mindspore"):
        backends.get("mxnet")
    require("tensorflow")
    entry = backends.get("tensorflow")
    monkeypatch.setattr(entry, "PACKAGE", "tensorflow_not_installed_here")  # as if never installed
    with pytest.raises(PipelineError) as error:
        backends.get("tensorflow")
    assert str(error.value) == "backend tensorflow is not installed: pip install -r requirements-tensorflow.txt"


@pytest.mark.parametrize("name", [name for name in BACKENDS if name != "torch"])
def test_the_in_process_tests_pass_on_every_backend(name):
    """The files of IN_PROCESS_FILES run on torch in the test process; here on each other backend in a
    pytest of its own (tlx picks one per process), as the mutation runs of TESTING.md use them."""
    require(name)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *(f"tests/{file}" for file in IN_PROCESS_FILES)],
                         cwd=ROOT, env={**os.environ, "IMDB_TEST_BACKEND": name}, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout


TRAIN_AND_SAVE = """
from imdb_lstm.model import SentimentLSTM, predict_logits, save_model
for name, options in OPTIONS.items():
    backend.seed(0)
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 50, (64, 12))
    labels = (ids[:, -3:] >= 26).sum(axis=1) >= 2  # learnable from the last words
    net = SentimentLSTM(50, 8, 8, **options)
    step = tlx.model.TrainOneStep(tlx.model.WithLoss(net, tlx.losses.softmax_cross_entropy_with_logits),
                                  tlx.optimizers.Adam(lr=0.02), net.trainable_weights)
    net.set_train()
    for _ in range(40):
        step(tlx.convert_to_tensor(ids), tlx.convert_to_tensor(labels.astype(np.int64)))
    net.set_eval()
    folder = FOLDER / "trained" / BACKEND / name
    folder.mkdir(parents=True)
    save_model(net, folder, vocabulary=None)
    np.save(folder / "ids.npy", ids)
    np.save(folder / "logits.npy", predict_logits(net, ids))
"""

ALONE_AND_TOGETHER = """
from imdb_lstm.model import SentimentLSTM, predict_logits
from imdb_lstm.text import encode
backend.seed(0)
net = SentimentLSTM(50, 8, 8, bidirectional=True, pooling="masked_mean_max", trim_padding=True)
net.set_eval()
rng = np.random.default_rng(0)
words = [str(w) for w in range(48)]
ids = encode([" ".join(rng.choice(words, n)) for n in (3, 7, 7, 12, 1, 5, 12, 3)], words, 16, "pre", "pre")
trimmed = FOLDER / "trim_padding" / BACKEND
trimmed.mkdir(parents=True)
np.save(trimmed / "together.npy", predict_logits(net, ids, batch_size=2))
own_words = [row[row != 0][None] for row in ids]  # each review alone, no padding at all
alone = [tlx.convert_to_numpy(net(tlx.convert_to_tensor(row))) for row in own_words]
np.save(trimmed / "alone.npy", np.concatenate(alone))
np.save(trimmed / "padded.npy", tlx.convert_to_numpy(net(tlx.convert_to_tensor(ids))))
"""

LOAD_AND_PREDICT = """
from imdb_lstm.model import load_model, predict_logits
for folder in FOLDER.glob("trained/*/*"):
    logits = predict_logits(load_model(folder), np.load(folder / "ids.npy"))
    np.save(folder / f"logits_on_{BACKEND}.npy", logits)
"""


LARGER = {"bidirectional": True, "num_layers": 2, "pooling": "masked_mean_max", "dropout": 0.3}
OPTIONS = {"tutorial": {}, "larger": LARGER, "max": {"pooling": "max"}, "last": {"pooling": "last"},
           "concat": {"pooling": "last_max_mean", "num_layers": 2}}


@pytest.fixture(scope="module")
def ran_on_each(tmp_path_factory):
    """A folder where each installed backend, in one process of its own, trained and saved every model
    option (trained/BACKEND/OPTION) and scored reviews with trimmed padding (trim_padding/BACKEND)."""
    folder = tmp_path_factory.mktemp("backends")
    header = f"from pathlib import Path\nFOLDER = Path({str(folder)!r})\nOPTIONS = {OPTIONS!r}\n"
    for backend in backends.installed():
        result = run_backend(backend, header + f"BACKEND = {backend!r}\n" + TRAIN_AND_SAVE + ALONE_AND_TOGETHER)
        assert result.returncode == 0, result.stderr
    return folder


def test_weights_saved_on_any_backend_predict_the_same_on_every_other(ran_on_each):
    """Parity: every model option, trained on each backend, scores the same on every backend."""
    installed_backends = backends.installed()
    header = f"from pathlib import Path\nFOLDER = Path({str(ran_on_each)!r})\n"
    for backend in installed_backends:
        result = run_backend(backend, header + f"BACKEND = {backend!r}\n" + LOAD_AND_PREDICT)
        assert result.returncode == 0, result.stderr
    for trained_on in installed_backends:
        for name in OPTIONS:
            folder = ran_on_each / "trained" / trained_on / name
            logits = np.load(folder / "logits.npy")
            assert np.abs(logits).max() > 0.5, "the model learned something, so labels are not ties"
            for loaded_on in installed_backends:
                reloaded = np.load(folder / f"logits_on_{loaded_on}.npy")
                np.testing.assert_allclose(reloaded, logits, atol=1e-4, err_msg=f"{trained_on} -> {loaded_on}, {name}")
                assert (reloaded.argmax(1) == logits.argmax(1)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_with_trim_padding_a_review_scores_the_same_alone_as_in_any_batch(ran_on_each, backend):
    require(backend)
    together, alone, padded = (np.load(ran_on_each / "trim_padding" / backend / f"{name}.npy")
                               for name in ("together", "alone", "padded"))
    np.testing.assert_allclose(together, alone, atol=1e-6)
    assert np.abs(padded - alone).max() > 1e-5, "the padding these rows share changes the logits untrimmed"
