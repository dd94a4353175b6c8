"""train: fit the LSTM classifier on the training split with TensorLayerX.

Reads data/prepared/train_*.npy and vocab.json (and data/pretrained/vectors.npy with
pretrain.use); writes data/model/ (model.json, weights.npz),
metrics/train.json (final epoch) and metrics/train_log.csv (one row per epoch, for `dvc plots`).
With `validation` > 0 it holds out that fraction of the training split (never the test split),
stops once the validation loss has not improved for `patience` epochs, and keeps the best epoch.
With pretrain.use the embedding starts from the pretrained vectors and stays frozen for the first
pretrain.frozen_epochs epochs; the epochs after those tune it too, at pretrain.fine_tune_lr.
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
from imdb_lstm.text import lengths, trim_padding

DATA = Path("data/prepared")
MODEL = Path("data/model")
PRETRAINED = Path("data/pretrained")


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


def batch_order(review_lengths, batch_size, rng, by_length):
    """The epoch's batches (index arrays) in a seeded random order. `by_length` sorts each window of
    50 batches by review length first, so a batch holds reviews of similar length and little padding."""
    order = rng.permutation(len(review_lengths))
    window = batch_size * 50 if by_length else len(order)
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        if by_length:
            chunk = chunk[np.argsort(review_lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))] if by_length else batches


def train_epoch(step, loss_fn, tlx, ids, labels, batches, trim, progress):
    """One pass over `batches` of the data; returns (mean loss, accuracy)."""
    loss_fn.correct, total_loss, seen = 0, 0.0, 0
    for batch in batches:
        rows = trim_padding(ids[batch]) if trim else ids[batch]
        loss = float(step(tlx.convert_to_tensor(rows), tlx.convert_to_tensor(labels[batch])))
        if not math.isfinite(loss):
            raise PipelineError(f"the training loss became {loss}: lower `lr` in params.yaml")
        total_loss, seen = total_loss + loss * len(batch), seen + len(batch)
        progress.update(len(batch))
        progress.set_postfix(loss=f"{total_loss / seen:.4f}")
    return total_loss / seen, loss_fn.correct / seen


def make_step(tlx, net, loss_fn, weights, lr, frozen):
    """An Adam step over `weights`; a `frozen` embedding is left out and gets no gradient."""
    embedding = net.embedding.all_weights[0]
    backend.set_trainable(embedding, not frozen)
    trained = [w for w in weights if not (frozen and w is embedding)]
    return tlx.model.TrainOneStep(tlx.model.WithLoss(net, loss_fn), tlx.optimizers.Adam(lr=lr), trained)


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
    from imdb_lstm.model import SentimentLSTM, predict_logits, save, start_from_vectors

    ids, labels = np.load(DATA / "train_ids.npy"), np.load(DATA / "train_labels.npy")
    ids, labels, held_out = hold_out(ids, labels, params["validation"], params["seed"])
    vocab_size = len(json.loads((DATA / "vocab.json").read_text())["words"])
    backend.seed(params["seed"])
    net = SentimentLSTM(vocab_size, **params["model"])
    trainable = list(net.trainable_weights)  # taken before any freezing: tlx caches this list
    use, frozen_epochs = params["pretrain"]["use"], params["pretrain"]["frozen_epochs"]
    if use:
        start_from_vectors(net, np.load(PRETRAINED / "vectors.npy"))
    loss_fn = CountingLoss(tlx)
    rng = np.random.default_rng(params["seed"])
    trim, review_lengths = params["model"]["trim_padding"], lengths(ids)
    log, best, start = [], None, time.perf_counter()
    net.set_train()
    for epoch in range(1, params["epochs"] + 1):
        frozen = use and epoch <= frozen_epochs
        if epoch == 1 or (use and epoch == frozen_epochs + 1):
            lr = params["pretrain"]["fine_tune_lr"] if use and not frozen else params["lr"]
            step = make_step(tlx, net, loss_fn, trainable, lr, frozen)
        desc = f"epoch {epoch}/{params['epochs']}" + (" (embedding frozen)" if frozen else "")
        with tqdm(total=len(ids), desc=desc, unit=" reviews") as progress:
            batches = batch_order(review_lengths, params["batch_size"], rng, by_length=trim)
            loss, accuracy = train_epoch(step, loss_fn, tlx, ids, labels, batches, trim, progress)
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
