"""imdb_lstm.metrics against scikit-learn's independent implementations, ties included."""
import numpy as np
import pytest
from sklearn import metrics as sk

from imdb_lstm.metrics import classification_metrics, loss_and_accuracy


def cases():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    yield "random", labels, rng.normal(size=(500, 2)) + labels[:, None] * [0, 0.8]
    # ties: five distinct scores for 500 reviews, as a model that saturates gives
    coarse = np.round(rng.normal(size=500) + labels, 0)
    yield "ties", labels, np.stack([np.zeros(500), coarse], axis=1)
    yield "all predicted positive", labels, np.stack([np.zeros(500), np.ones(500) + rng.random(500)], axis=1)
    yield "unbalanced", (rng.random(500) < 0.1).astype(int), rng.normal(size=(500, 2))
    # edge counts, where a wrong guard against dividing by zero shows: no review predicted positive
    # (precision = recall = 0), and one positive review, the one predicted positive (both exactly 1)
    yield "none predicted positive", labels, np.stack([np.ones(500), rng.random(500)], axis=1)
    one = np.zeros(50, dtype=int)
    one[7] = 1
    yield "one positive", one, np.stack([np.zeros(50), np.where(one == 1, 2.0, -rng.random(50))], axis=1)


@pytest.mark.parametrize("name, labels, logits", list(cases()), ids=[c[0] for c in cases()])
def test_metrics_match_scikit_learn(name, labels, logits):
    metrics, predicted, (fpr, tpr, _) = classification_metrics(labels, logits)
    probability = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    expected = {"accuracy": sk.accuracy_score(labels, predicted),
                "precision": sk.precision_score(labels, predicted, zero_division=0),
                "recall": sk.recall_score(labels, predicted),
                "f1": sk.f1_score(labels, predicted, zero_division=0),
                "roc_auc": sk.roc_auc_score(labels, probability),
                "loss": sk.log_loss(labels, np.stack([1 - probability, probability], axis=1))}
    assert (predicted == logits.argmax(axis=1)).all()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=2e-6), key
    sk_fpr, sk_tpr, _ = sk.roc_curve(labels, probability, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
    assert metrics["reviews"] == len(labels)
    # eval.json carries 6 decimals: enough to compare runs, short enough to read
    assert all(round(value, 6) == value for value in metrics.values())


def test_loss_and_accuracy_of_known_logits():
    logits = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    loss, accuracy = loss_and_accuracy(logits, np.array([0, 1, 1]))
    assert loss == pytest.approx(-(np.log(0.9) + np.log(0.8) + np.log(0.4)) / 3)
    assert accuracy == pytest.approx(2 / 3)
