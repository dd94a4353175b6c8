"""imdb_lstm.metrics, which scores through scikit-learn, against the formulas evaluate used before it did
(written out below), ties included: the same figures to 1e-12, so eval.json keeps its bytes."""
import warnings

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


def by_hand(labels, logits):
    """The metrics and ROC curve as evaluate computed them by hand, unrounded."""
    positive = np.exp(logits[:, 1] - np.logaddexp(logits[:, 0], logits[:, 1]))
    predicted = logits.argmax(axis=1)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    precision, recall = tp / max(int(predicted.sum()), 1), tp / max(int(labels.sum()), 1)
    order = np.argsort(-positive, kind="stable")
    scores, ordered = positive[order], labels[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(ordered)[last_of_each_score]
    tpr = np.r_[0.0, true_positives / labels.sum()]
    fpr = np.r_[0.0, (last_of_each_score + 1 - true_positives) / (len(labels) - labels.sum())]
    return ({"precision": precision, "recall": recall, "roc_auc": float(np.trapezoid(tpr, fpr)),
             "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0},
            (fpr, tpr, np.r_[np.inf, scores[last_of_each_score]]))


@pytest.mark.parametrize("name, labels, logits", list(cases()), ids=[c[0] for c in cases()])
def test_metrics_are_the_figures_of_the_hand_formulas_and_of_scikit_learn(name, labels, logits):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # evaluate's log stays clean: no review predicted positive is no warning
        metrics, predicted, curve = classification_metrics(labels, logits)
    figures, hand_curve = by_hand(labels, logits)
    for key, value in figures.items():
        assert abs(metrics[key] - round(value, 6)) < 1e-12, key
    for ours, theirs in zip(curve, hand_curve):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    probability = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    assert metrics["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted), abs=1e-6)
    assert metrics["loss"] == pytest.approx(sk.log_loss(labels, np.stack([1 - probability, probability], 1)), abs=2e-6)
    assert (predicted == logits.argmax(axis=1)).all() and metrics["reviews"] == len(labels)
    # eval.json carries 6 decimals: enough to compare runs, short enough to read
    assert all(round(value, 6) == value for value in metrics.values())


def test_loss_and_accuracy_of_known_logits():
    logits = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    loss, accuracy = loss_and_accuracy(logits, np.array([0, 1, 1]))
    assert loss == pytest.approx(-(np.log(0.9) + np.log(0.8) + np.log(0.4)) / 3)
    assert accuracy == pytest.approx(2 / 3)
