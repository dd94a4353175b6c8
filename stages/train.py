"""train: fit the LSTM classifier on the training split with TensorLayerX.

Reads data/prepared/train_*.npy and vocab.json; writes data/model/ (model.json, weights.npz),
metrics/train.json (final epoch) and metrics/train_log.csv (one row per epoch, for `dvc plots`).
With `validation` > 0 it holds out that fraction of the training split (never the test split),
stops once the validation loss has not improved for `patience` epochs, and keeps the best epoch.
"""
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from imdb_lstm import backend
from imdb_lstm.errors import PipelineError, run_stage
from imdb_lstm.files import atomic_dir, write_csv, write_json
from imdb_lstm.metrics import loss_and_accuracy
from imdb_lstm.params import load_params

DATA = Path("data/prepared")
MODEL = Path("data/model")


class CountingLoss:
    """Softmax cross-entropy that also counts the batch's correct predictions, so train accuracy
    comes from the same forward pass as the gradient step."""

    def __init__(self, tlx):
        self.tlx = tlx
        self.correct = 0

    def __call__(self, logits, labels):
        predicted = self.tlx.convert_to_numpy(self.tlx.argmax(logits, axis=1))
        self.correct += int((predicted == self.tlx.convert_to_numpy(labels)).sum())
        return self.tlx.losses.softmax_cross_entropy_with_logits(logits, labels)


def train_epoch(step, loss_fn, tlx, ids, labels, batch_size, rng, progress):
    """One pass over the data in a seeded random order; returns (mean loss, accuracy)."""
    order = rng.permutation(len(ids))
    loss_fn.correct, total_loss = 0, 0.0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        loss = float(step(tlx.convert_to_tensor(ids[batch]), tlx.convert_to_tensor(labels[batch])))
        if not math.isfinite(loss):
            raise PipelineError(f"the training loss became {loss}: lower `lr` in params.yaml")
        total_loss += loss * len(batch)
        progress.update(len(batch))
        progress.set_postfix(loss=f"{total_loss / (start + len(batch)):.4f}")
    return total_loss / len(ids), loss_fn.correct / len(ids)


def hold_out(ids, labels, fraction, seed):
    """(train ids, train labels, (validation ids, labels) or None): a seeded split of the training set."""
    if not fraction:
        return ids, labels, None
    order = np.random.default_rng([seed, 1]).permutation(len(ids))  # its own stream: shuffling is unchanged
    held = order[:round(len(ids) * fraction)]
    kept = np.sort(order[len(held):])
    return ids[kept], labels[kept], (ids[held], labels[held])


def main():
    params = load_params()
    tlx = backend.load(params["backend"], params["device"])
    from imdb_lstm.model import SentimentLSTM, predict_logits, save

    ids, labels = np.load(DATA / "train_ids.npy"), np.load(DATA / "train_labels.npy")
    ids, labels, held_out = hold_out(ids, labels, params["validation"], params["seed"])
    vocab_size = len(json.loads((DATA / "vocab.json").read_text())["words"])
    backend.seed(params["seed"])
    net = SentimentLSTM(vocab_size, **params["model"])
    loss_fn = CountingLoss(tlx)
    step = tlx.model.TrainOneStep(
        tlx.model.WithLoss(net, loss_fn), tlx.optimizers.Adam(lr=params["lr"]), net.trainable_weights
    )
    rng = np.random.default_rng(params["seed"])
    log, best, start = [], None, time.perf_counter()
    net.set_train()
    for epoch in range(1, params["epochs"] + 1):
        with tqdm(total=len(ids), desc=f"epoch {epoch}/{params['epochs']}", unit=" reviews") as progress:
            loss, accuracy = train_epoch(step, loss_fn, tlx, ids, labels, params["batch_size"], rng, progress)
            progress.set_postfix(loss=f"{loss:.4f}", accuracy=f"{accuracy:.4f}")
        log.append([epoch, round(loss, 6), round(accuracy, 6)])
        if held_out is None:
            continue
        net.set_eval()
        val_loss, val_accuracy = (round(v, 6) for v in loss_and_accuracy(predict_logits(net, held_out[0]),
                                                                          held_out[1]))
        net.set_train()
        log[-1] += [val_loss, val_accuracy]
        if best is None or val_loss < best["val_loss"]:
            weights = [tlx.convert_to_numpy(w).copy() for w in net.all_weights]
            best = {"best_epoch": epoch, "val_loss": val_loss, "val_accuracy": val_accuracy, "weights": weights}
        elif epoch - best["best_epoch"] >= params["patience"]:
            break
    seconds = time.perf_counter() - start
    if best:
        tlx.files.assign_weights(best.pop("weights"), net)

    with atomic_dir(MODEL) as tmp:
        save(net, tmp)
    header = ["epoch", "loss", "accuracy"] + (["val_loss", "val_accuracy"] if held_out else [])
    write_csv("metrics/train_log.csv", header, log)
    write_json("metrics/train.json", {"backend": backend.version(), "device": backend.device(),
                                      "epochs": params["epochs"], "epochs_run": len(log),
                                      "loss": log[-1][1], "accuracy": log[-1][2], **(best or {})})
    print(f"train: {len(log)} epochs on {backend.version()} ({backend.device()}) in {seconds:.0f} s, "
          f"final loss {log[-1][1]:.4f}, train accuracy {log[-1][2]:.4f}"
          + (f", kept epoch {best['best_epoch']} (validation accuracy {best['val_accuracy']:.4f})" if best else ""))


if __name__ == "__main__":
    run_stage(main)
