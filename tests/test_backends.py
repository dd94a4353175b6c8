"""torch and paddle run the same model: same weights give the same logits, saved weights cross over."""
import numpy as np
import pytest

TRAIN_AND_SAVE = """
from imdb_lstm.model import SentimentLSTM, predict_logits, save
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
save(net, FOLDER)
np.save(FOLDER / "ids.npy", ids)
np.save(FOLDER / "logits.npy", predict_logits(net, ids))
"""

LOAD_AND_PREDICT = """
from imdb_lstm.model import load, predict_logits
np.save(FOLDER / "logits_reloaded.npy", predict_logits(load(FOLDER), np.load(FOLDER / "ids.npy")))
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
