"""torch and paddle run the same model: same weights give the same logits, saved weights cross over."""
import numpy as np
import pytest

TRAIN_AND_SAVE = """
from imdb_lstm.model import SentimentLSTM, predict_logits, save_model
backend.seed(0)
rng = np.random.default_rng(0)
ids = rng.integers(2, 50, (64, 12))
labels = (ids[:, -3:] >= 26).sum(axis=1) >= 2  # learnable from the last words
net = SentimentLSTM(50, 8, 8, **OPTIONS)
step = tlx.model.TrainOneStep(tlx.model.WithLoss(net, tlx.losses.softmax_cross_entropy_with_logits),
                              tlx.optimizers.Adam(lr=0.02), net.trainable_weights)
net.set_train()
for _ in range(40):
    step(tlx.convert_to_tensor(ids), tlx.convert_to_tensor(labels.astype(np.int64)))
net.set_eval()
save_model(net, FOLDER, vocabulary=None)
np.save(FOLDER / "ids.npy", ids)
np.save(FOLDER / "logits.npy", predict_logits(net, ids))
"""

LOAD_AND_PREDICT = """
from imdb_lstm.model import load_model, predict_logits
np.save(FOLDER / "logits_reloaded.npy", predict_logits(load_model(FOLDER), np.load(FOLDER / "ids.npy")))
"""


LARGER = {"bidirectional": True, "num_layers": 2, "pooling": "masked_mean_max", "dropout": 0.3}


@pytest.mark.parametrize("options", [{}, LARGER, {"pooling": "max"}, {"pooling": "last"}],
                         ids=["tutorial", "larger", "max", "last"])
@pytest.mark.parametrize("trained_on, loaded_on", [("torch", "paddle"), ("paddle", "torch")])
def test_weights_saved_on_one_backend_predict_the_same_on_the_other(tmp_path, backend_run, trained_on, loaded_on,
                                                                      options):
    folder = f"from pathlib import Path\nFOLDER = Path({str(tmp_path)!r})\nOPTIONS = {options!r}\n"
    for backend, code in ((trained_on, TRAIN_AND_SAVE), (loaded_on, LOAD_AND_PREDICT)):
        result = backend_run(backend, folder + code)
        assert result.returncode == 0, result.stderr
    logits, reloaded = np.load(tmp_path / "logits.npy"), np.load(tmp_path / "logits_reloaded.npy")
    assert np.abs(logits).max() > 0.5, "the model learned something, so labels are not ties"
    np.testing.assert_allclose(reloaded, logits, atol=1e-4)
    assert (reloaded.argmax(1) == logits.argmax(1)).all()


ALONE_AND_TOGETHER = """
from imdb_lstm.model import SentimentLSTM, predict_logits
from imdb_lstm.text import encode
backend.seed(0)
net = SentimentLSTM(50, 8, 8, bidirectional=True, pooling="masked_mean_max", trim_padding=True)
net.set_eval()
rng = np.random.default_rng(0)
words = [str(w) for w in range(48)]
ids = encode([" ".join(rng.choice(words, n)) for n in (3, 7, 7, 12, 1, 5, 12, 3)], words, 16, "pre", "pre")
np.save(FOLDER / "together.npy", predict_logits(net, ids, batch_size=2))
own_words = [row[row != 0][None] for row in ids]  # each review alone, no padding at all
np.save(FOLDER / "alone.npy", np.concatenate([tlx.convert_to_numpy(net(tlx.convert_to_tensor(row))) for row in own_words]))
np.save(FOLDER / "padded.npy", tlx.convert_to_numpy(net(tlx.convert_to_tensor(ids))))
"""


@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_with_trim_padding_a_review_scores_the_same_alone_as_in_any_batch(tmp_path, backend_run, backend):
    result = backend_run(backend, f"from pathlib import Path\nFOLDER = Path({str(tmp_path)!r})\n" + ALONE_AND_TOGETHER)
    assert result.returncode == 0, result.stderr
    together, alone, padded = (np.load(tmp_path / f"{name}.npy") for name in ("together", "alone", "padded"))
    np.testing.assert_allclose(together, alone, atol=1e-6)
    assert np.abs(padded - alone).max() > 1e-5, "the padding these rows share changes the logits untrimmed"
