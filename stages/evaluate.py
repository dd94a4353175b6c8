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
from imdb_lstm.metrics import classification_metrics
from imdb_lstm.model import load_model, predict_logits
from imdb_lstm.params import load_params

DATA = Path("data/prepared")
MODEL = Path("data/model")
ROC_POINTS = 200  # enough for a smooth curve in `dvc plots`, small enough to commit


def main():
    params = load_params()
    backend.load(params["backend"], params["device"], params["reproducible"])
    start = time.perf_counter()
    net = load_model(MODEL)
    ids, labels = np.load(DATA / "test_ids.npy"), np.load(DATA / "test_labels.npy")
    metrics, predicted, (fpr, tpr, thresholds) = classification_metrics(labels, predict_logits(net, ids))

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
