"""Scores of (n, 2) logits against 0/1 labels: the same code for validation and test."""
import numpy as np


def log_softmax(logits):
    return logits - np.logaddexp(logits[:, 0], logits[:, 1])[:, None]


def loss_and_accuracy(logits, labels):
    """Mean softmax cross-entropy and accuracy."""
    loss = -log_softmax(logits)[np.arange(len(labels)), labels].mean()
    return float(loss), float((logits.argmax(axis=1) == labels).mean())


def classification_metrics(labels, logits):
    """(metrics for eval.json, predicted labels, (fpr, tpr, thresholds) of the ROC curve at every distinct
    score), through scikit-learn (imported here: predict, which reads log_softmax, needs no scikit-learn)."""
    from sklearn import metrics as sk

    positive = np.exp(log_softmax(logits)[:, 1])
    predicted = logits.argmax(axis=1)
    fpr, tpr, thresholds = sk.roc_curve(labels, positive, drop_intermediate=False)
    loss, accuracy = loss_and_accuracy(logits, labels)
    metrics = {
        "accuracy": accuracy,
        "precision": float(sk.precision_score(labels, predicted, zero_division=0)),
        "recall": float(sk.recall_score(labels, predicted, zero_division=0)),
        "f1": float(sk.f1_score(labels, predicted, zero_division=0)),
        "roc_auc": float(sk.auc(fpr, tpr)),
        "loss": loss,
        "reviews": len(labels),
    }
    return {k: round(v, 6) for k, v in metrics.items()}, predicted, (fpr, tpr, thresholds)
