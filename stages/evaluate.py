"""evaluate: score the trained model on the official test split.

Reads data/model/ and data/prepared/test_*.npy; writes metrics/eval.json and the plot data
metrics/confusion.csv (actual, predicted per review) and metrics/roc.csv (fpr, tpr, threshold).
"""
import time
from pathlib import Path

import numpy as np

from imdb_lstm import backend
from imdb_lstm.errors import run_stage
from imdb_lstm.files import write_csv, write_json
from imdb_lstm.params import load_params

DATA = Path("data/prepared")
MODEL = Path("data/model")
ROC_POINTS = 200  # enough for a smooth curve in `dvc plots`, small enough to commit


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
    log_probs = logits - np.logaddexp(logits[:, 0], logits[:, 1])[:, None]
    positive = np.exp(log_probs[:, 1])
    predicted = (logits[:, 1] > logits[:, 0]).astype(np.int64)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    precision = tp / max(int(predicted.sum()), 1)
    recall = tp / max(int(labels.sum()), 1)
    fpr, tpr, thresholds = roc_curve(labels, positive)
    metrics = {
        "accuracy": float((predicted == labels).mean()),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": float(np.trapezoid(tpr, fpr)),
        "loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
        "reviews": len(labels),
    }
    return {k: round(v, 6) for k, v in metrics.items()}, predicted, (fpr, tpr, thresholds)


def main():
    params = load_params()
    backend.load(params["backend"], params["device"])
    from imdb_lstm.model import load, predict_logits

    start = time.perf_counter()
    net = load(MODEL)
    ids, labels = np.load(DATA / "test_ids.npy"), np.load(DATA / "test_labels.npy")
    metrics, predicted, (fpr, tpr, thresholds) = classification_metrics(labels, predict_logits(net, ids))
    metrics["backend"] = backend.version()

    keep = np.unique(np.linspace(0, len(fpr) - 1, ROC_POINTS).round().astype(int))
    write_csv("metrics/roc.csv", ["fpr", "tpr", "threshold"],
              [(f"{fpr[i]:.6f}", f"{tpr[i]:.6f}", f"{min(thresholds[i], 1.0):.6f}") for i in keep])
    names = np.array(["negative", "positive"])
    write_csv("metrics/confusion.csv", ["actual", "predicted"], zip(names[labels], names[predicted]))
    write_json("metrics/eval.json", metrics)
    print(f"evaluate: test accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}, "
          f"ROC AUC {metrics['roc_auc']:.4f} on {len(labels)} reviews in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_stage(main)
