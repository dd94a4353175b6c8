"""Scores of (n, 2) logits against 0/1 labels, in numpy: the same code for validation and test."""
import numpy as np


def log_softmax(logits):
    return logits - np.logaddexp(logits[:, 0], logits[:, 1])[:, None]


def loss_and_accuracy(logits, labels):
    """Mean softmax cross-entropy and accuracy."""
    loss = -log_softmax(logits)[np.arange(len(labels)), labels].mean()
    return float(loss), float((logits.argmax(axis=1) == labels).mean())


def roc_curve(labels, scores):
    """(fpr, tpr, thresholds) at every distinct score, from the highest score down."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(labels)[last_of_each_score]
    false_positives = last_of_each_score + 1 - true_positives
    tpr = np.r_[0.0, true_positives / labels.sum()]
    fpr = np.r_[0.0, false_positives / (len(labels) - labels.sum())]
    return fpr, tpr, np.r_[np.inf, scores[last_of_each_score]]


def classification_metrics(labels, logits):
    """(metrics for eval.json, predicted labels, (fpr, tpr, thresholds) of the ROC curve)."""
    positive = np.exp(log_softmax(logits)[:, 1])
    predicted = logits.argmax(axis=1)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    precision = tp / max(int(predicted.sum()), 1)
    recall = tp / max(int(labels.sum()), 1)
    fpr, tpr, thresholds = roc_curve(labels, positive)
    loss, accuracy = loss_and_accuracy(logits, labels)
    metrics = {
        "accuracy": accuracy,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": float(np.trapezoid(tpr, fpr)),
        "loss": loss,
        "reviews": len(labels),
    }
    return {k: round(v, 6) for k, v in metrics.items()}, predicted, (fpr, tpr, thresholds)
