"""train: fit the LSTM classifier on the training split with TensorLayerX.

Reads data/prepared/train_*.npy and vocab.json (and data/pretrained/vectors.npy with
pretrain.use); writes data/model/ (model.json, weights.npz),
metrics/train.json (the kept epoch's figures) and metrics/train_log.csv (one row per epoch, for `dvc plots`).
With `validation` > 0 it holds out that fraction of the training split (never the test split),
stops once the validation loss has not improved for `patience` epochs, and keeps the best epoch.
With pretrain.use the embedding starts from the pretrained vectors and stays frozen for the first
pretrain.frozen_epochs epochs; the epochs after those tune it too, at pretrain.fine_tune_lr.
"""
import json
import time
from pathlib import Path

import numpy as np

from imdb_lstm import backend
from imdb_lstm.errors import run_stage
from imdb_lstm.files import atomic_dir, sha256_file, write_csv, write_json
from imdb_lstm.metrics import loss_and_accuracy
from imdb_lstm.params import load_params
from imdb_lstm.progress import bar, log_line
from imdb_lstm.text import lengths
from imdb_lstm.training import CountingLoss, batch_order, hold_out, make_step, train_epoch

DATA = Path("data/prepared")
MODEL = Path("data/model")
PRETRAINED = Path("data/pretrained")


def main():
    params = load_params()
    ids, labels = np.load(DATA / "train_ids.npy"), np.load(DATA / "train_labels.npy")
    ids, labels, held_out = hold_out(ids, labels, params["validation"], params["seed"])
    tlx = backend.load(params["backend"], params["device"], params["reproducible"])
    from imdb_lstm.model import SentimentLSTM, predict_logits, save_model, start_from_vectors

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
    patience = params["patience"]
    log, best, start = [], None, time.perf_counter()
    net.set_train()
    for epoch in range(1, params["epochs"] + 1):
        frozen = use and epoch <= frozen_epochs
        if epoch == 1 or (use and epoch == frozen_epochs + 1):
            lr = params["pretrain"]["fine_tune_lr"] if use and not frozen else params["lr"]
            step = make_step(tlx, net, loss_fn, trainable, lr, frozen)
        desc = f"epoch {epoch}/{params['epochs']}" + (" (embedding frozen)" if frozen else "")
        epoch_start = time.perf_counter()
        with bar(total=len(ids), desc=desc, unit=" reviews") as progress:
            batches = batch_order(review_lengths, params["batch_size"], rng, by_length=trim)
            loss, accuracy = train_epoch(step, loss_fn, tlx, ids, labels, batches, trim, progress)
            progress.set_postfix(loss=f"{loss:.4f}", accuracy=f"{accuracy:.4f}")
        log_line(f"{desc}: loss {loss:.4f}, accuracy {accuracy:.4f} in {time.perf_counter() - epoch_start:.0f} s")
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
        elif epoch - best["best_epoch"] >= patience:
            break
    seconds = time.perf_counter() - start
    if best:
        tlx.files.assign_weights(best.pop("weights"), net)

    with atomic_dir(MODEL) as tmp:
        save_model(net, tmp, vocabulary=sha256_file(DATA / "vocab.json"))
    header = ["epoch", "loss", "accuracy"] + (["val_loss", "val_accuracy"] if held_out else [])
    write_csv("metrics/train_log.csv", header, log)
    kept = log[best["best_epoch"] - 1] if best else log[-1]  # the epoch whose weights were saved
    write_json("metrics/train.json", {"backend": backend.version(), "device": backend.device(),
                                      "reproducible": params["reproducible"],
                                      "epochs": params["epochs"], "epochs_run": len(log),
                                      "loss": kept[1], "accuracy": kept[2], **(best or {})})
    print(f"train: {len(log)} epochs on {backend.version()} ({backend.device()}) in {seconds:.0f} s; kept epoch "
          f"{kept[0]}: loss {kept[1]:.4f}, train accuracy {kept[2]:.4f}"
          + (f", validation accuracy {best['val_accuracy']:.4f}" if best else ""))


if __name__ == "__main__":
    run_stage(main)
