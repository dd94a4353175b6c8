"""The language model, in the test process: its files, and a classifier that starts from it.

tlx runs in the test process, on the backend IMDB_TEST_BACKEND names (torch if unset); test_backends.py
runs these files once more on each other installed backend. A mutation tool sees only what runs in its own
process (TESTING.md): these tests let it see the backend-facing code run.
"""
import json
import shutil

import numpy as np
import pytest
from helpers import weights_of

from imdb_lstm import backend
from imdb_lstm.errors import PipelineError

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
