"""The LSTM classifier, in the test process: its shapes and options, poolings, padding, and its files.

tlx runs in the test process, on the backend IMDB_TEST_BACKEND names (torch if unset); test_backends.py
runs these files once more on each other installed backend. A mutation tool sees only what runs in its own
process (TESTING.md): these tests let it see the backend-facing code run.
"""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from helpers import CASES, damage, spread_weights, weights_of

from imdb_lstm import backend
from imdb_lstm.errors import PipelineError

CONFIGS = [{}, {"bidirectional": True}, {"num_layers": 3}, {"bidirectional": True, "num_layers": 2},
           {"pooling": "masked_mean_max"}, {"bidirectional": True, "pooling": "masked_mean_max", "dropout": 0.2},
           {"embedding_dropout": 0.5}, {"pooling": "last_max_mean"}]


def test_the_model_modules_import_before_a_backend_loads_and_their_classes_exist_after():
    program = """
import sys
from imdb_lstm import backend, language_model, model
assert "tensorlayerx" not in sys.modules
try:
    model.SentimentLSTM
except RuntimeError as error:
    print(error)
"""
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "call imdb_lstm.backend.load(name) before building a model\n", \
        done.stderr


def test_a_model_class_is_made_once_on_the_loaded_backends_module(model, tlx):
    from imdb_lstm import language_model
    assert model.SentimentLSTM is model.SentimentLSTM and model.SentimentLSTM.__name__ == "SentimentLSTM"
    assert issubclass(model.SentimentLSTM, tlx.nn.Module) and issubclass(language_model.LanguageModel, tlx.nn.Module)
    assert language_model.LanguageModel.__module__ == "imdb_lstm.language_model"
    for module, name in ((model, "SentimentLSTMs"), (language_model, "LanguageModels")):
        with pytest.raises(AttributeError, match=f"module '{module.__name__}' has no attribute '{name}'"):
            getattr(module, name)


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
                "masked_mean_max": np.concatenate([masked_mean, np.where(words, states, -np.inf).max(1)], 1),
                "last_max_mean": np.concatenate([states[:, -1], np.where(words, states, -np.inf).max(1),
                                                 masked_mean], 1)}
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
                   "masked_mean_max, last, last_max_mean",
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
