"""train: fit the LSTM classifier on the training split with TensorLayerX.

Reads data/prepared/train_*.npy and vocab.json (and data/pretrained/vectors.npy with
pretrain.use, data/lm/ with lm.use); writes data/model/ (model.json, weights.npz), metrics/train.json (the kept epoch's
figures) and, through dvclive, metrics/epochs/ (each epoch's, as it ends: what `dvc exp show` and
`dvc plots show` read). After each epoch it keeps a checkpoint (imdb_lstm/checkpoint.py): a run
that was killed resumes after its last whole epoch, and ends as an uninterrupted run would; a finished
run keeps its last one, so a longer run (`dvc exp run -S epochs=10` after 5) trains only the epochs it adds.
With `validation` > 0 it holds out that fraction of the training split (never the test split),
stops once the validation loss has not improved for `patience` epochs, and keeps the best epoch.
With pretrain.use the embedding starts from the pretrained vectors and stays frozen for the first
pretrain.frozen_epochs epochs; the epochs after those tune it too, at pretrain.fine_tune_lr.
With lm.use the embedding and LSTM start from the language model's (stages/lm.py) and stay frozen
for the first lm.frozen_epochs epochs, which train the layers above them; then all, at lm.fine_tune_lr.
With virtual_adversarial > 0 it also reads the 50,000 unlabelled reviews of data/raw/aclImdb_v1.tar.gz
(never the test split), one batch of them beside each labelled batch (imdb_lstm/training.py).
With weight_average > 0 it keeps a moving average of the weights (training.WeightAverage): validation
scores the average, and the model saved is the average (of the kept epoch's end, with validation).
"""
import contextlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
from dvclive import Live

from imdb_lstm import backend
from imdb_lstm.archive import unlabelled_texts
from imdb_lstm.checkpoint import CHECKPOINT, fingerprint, load_checkpoint, remove_checkpoint, save_checkpoint
from imdb_lstm.errors import PipelineError, run_stage
from imdb_lstm.files import atomic_dir, sha256_file, write_json
from imdb_lstm.metrics import loss_and_accuracy
from imdb_lstm.params import load_params
from imdb_lstm.progress import bar, log_line
from imdb_lstm.text import PROCESSES, encode, lengths
from imdb_lstm.training import (
    CountingLoss,
    WeightAverage,
    batch_order,
    hold_out,
    make_step,
    start_from_vectors,
    train_epoch,
    unlabelled_batches,
)

ARCHIVE = Path("data/raw/aclImdb_v1.tar.gz")
DATA = Path("data/prepared")
MODEL = Path("data/model")
PRETRAINED = Path("data/pretrained")
LM = Path("data/lm")
EPOCHS = Path("metrics/epochs")  # dvclive's folder
INPUTS = [DATA / "train_ids.npy", DATA / "train_labels.npy", DATA / "vocab.json", PRETRAINED / "vectors.npy",
          LM / "weights.npz"]


def main():
    params = load_params()
    ids, labels = np.load(DATA / "train_ids.npy"), np.load(DATA / "train_labels.npy")
    ids, labels, held_out = hold_out(ids, labels, params["validation"], params["seed"])
    tlx = backend.load(params["backend"], params["device"], params["reproducible"])
    from imdb_lstm.language_model import start_from_lm
    from imdb_lstm.model import SentimentLSTM, predict_logits, save_model

    words = json.loads((DATA / "vocab.json").read_text())["words"]
    unlabelled = read_unlabelled(words, params) if params["virtual_adversarial"] else None
    backend.seed(params["seed"])
    net = SentimentLSTM(len(words), **params["model"])
    trainable = list(net.trainable_weights)  # taken before any freezing: tlx caches this list
    if params["lm"]["use"]:
        start_from_lm(net, LM, words)
    elif params["pretrain"]["use"]:
        start_from_vectors(net, np.load(PRETRAINED / "vectors.npy"))
    warm_layers, frozen_epochs, fine_tune_lr = warm_start(params)
    loss_fn = CountingLoss(tlx)
    rng = np.random.default_rng(params["seed"])
    trim, review_lengths = params["model"]["trim_padding"], lengths(ids)
    patience = params["patience"]
    log, best, first_epoch, start = [], None, 1, time.perf_counter()
    # without `epochs`: a finished run's checkpoint lets a longer run go on from its last epoch
    made_for = fingerprint({k: v for k, v in params.items() if k != "epochs"}, [*INPUTS, Path(__file__)],
                           backend.version())
    # a run resumes with an uninterrupted run's bits only if dropout's generator can be put back
    resumable = not (params["model"]["dropout"] or params["model"]["embedding_dropout"]) or \
        backend.rng_state() is not None
    if not resumable:
        log_line(f"no checkpoints: {params['backend']} cannot save dropout's random generator, so a stopped run "
                 "starts again from epoch 1")
    saved = load_checkpoint(made_for) if resumable else None
    if saved and saved[0]["epoch"] >= params["epochs"]:
        saved = None  # a run as long or longer: this one starts over (so `dvc repro --force` trains again)
    if saved:
        state, arrays = saved
        tlx.files.assign_weights(arrays["weights"], net)
        backend.set_rng_state(arrays["rng"])
        rng.bit_generator.state = state["rng"]
        log, first_epoch = state["log"], state["epoch"] + 1
        best = state["best"] and {**state["best"], "weights": arrays["best_weights"]}
        log_line(f"resuming after epoch {state['epoch']}, from the checkpoint in {CHECKPOINT}")
    resumed_average = [state["average"], arrays["average"]] if saved else []
    average = WeightAverage(tlx, net, params["weight_average"], *resumed_average) if params["weight_average"] else None
    net.set_train()
    with epoch_log(EPOCHS) as live:
        for row in log:  # the epochs a resumed run did before: the files come out as an uninterrupted run's
            log_epoch(live, row, held_out is not None)
        for epoch in range(first_epoch, params["epochs"] + 1):
            frozen = epoch <= frozen_epochs
            if epoch == first_epoch or epoch == frozen_epochs + 1:
                lr = fine_tune_lr if warm_layers and not frozen else params["lr"]
                step = make_step(tlx, net, loss_fn, trainable, lr,
                                 [getattr(net, layer) for layer in warm_layers] if frozen else (),
                                 params["adversarial"], params["virtual_adversarial"])
                if saved and epoch == first_epoch:
                    backend.restore_optimizer(step, dict(zip(state["optimizer"], arrays["optimizer"])))
            desc = f"epoch {epoch}/{params['epochs']}" + (f" ({' and '.join(warm_layers)} frozen)" if frozen else "")
            epoch_start = time.perf_counter()
            with bar(total=len(ids), desc=desc, unit=" reviews") as progress:
                batches = batch_order(review_lengths, params["batch_size"], rng, by_length=trim)
                # the epoch's own generator: a resumed run draws what an uninterrupted one did
                extra = None if unlabelled is None else unlabelled_batches(
                    unlabelled, len(batches), params["batch_size"], np.random.default_rng([params["seed"], 3, epoch]),
                    trim, params["model"]["embedding_dim"])
                loss, accuracy = train_epoch(step, loss_fn, tlx, ids, labels, batches, trim, progress, extra, average)
                progress.set_postfix(loss=f"{loss:.4f}", accuracy=f"{accuracy:.4f}")
            log.append([epoch, round(loss, 6), round(accuracy, 6)])
            stop, own_val_loss = False, None
            if held_out is not None:
                net.set_eval()
                if average:  # the weights as trained, to compare: printed, not logged
                    own_val_loss = loss_and_accuracy(predict_logits(net, held_out[0]), held_out[1])[0]
                with average.in_place() if average else contextlib.nullcontext():
                    val_loss, val_accuracy = (round(v, 6) for v in loss_and_accuracy(predict_logits(net, held_out[0]),
                                                                                      held_out[1]))
                    if best is None or val_loss < best["val_loss"]:
                        weights = [tlx.convert_to_numpy(w).copy() for w in net.all_weights]
                        best = {"best_epoch": epoch, "val_loss": val_loss, "val_accuracy": val_accuracy,
                                "weights": weights}
                net.set_train()
                log[-1] += [val_loss, val_accuracy]
                stop = epoch - best["best_epoch"] >= patience
            if resumable and not stop:  # the last epoch's too: a longer run goes on from it
                # after the last frozen epoch the next one starts a fresh optimizer: none to keep
                keep_checkpoint(made_for, log, rng, best, None if epoch == frozen_epochs else step, net, tlx, average)
            log_epoch(live, log[-1], held_out is not None)
            log_line(f"{desc}: loss {loss:.4f}, accuracy {accuracy:.4f}" + (
                f", validation loss {log[-1][3]:.4f}" if held_out is not None else "")
                + (f" (the weights as trained: {own_val_loss:.4f})" if own_val_loss is not None else "")
                + f" in {time.perf_counter() - epoch_start:.0f} s")
            if stop:
                break
    seconds = time.perf_counter() - start
    if best:
        tlx.files.assign_weights(best.pop("weights"), net)
    elif average:
        tlx.files.assign_weights(average.values, net)

    with atomic_dir(MODEL) as tmp:
        save_model(net, tmp, vocabulary=sha256_file(DATA / "vocab.json"))
    kept = log[best["best_epoch"] - 1] if best else log[-1]  # the epoch whose weights were saved
    write_json("metrics/train.json", {"backend": backend.version(), "device": backend.device(),
                                      "reproducible": params["reproducible"],
                                      "epochs": params["epochs"], "epochs_run": len(log),
                                      "loss": kept[1], "accuracy": kept[2], **(best or {})})
    if stop:  # a longer run would stop here too: there is nothing to go on from
        remove_checkpoint()
    print(f"train: {len(log)} epochs on {backend.version()} ({backend.device()}) in {seconds:.0f} s; kept epoch "
          f"{kept[0]}: loss {kept[1]:.4f}, train accuracy {kept[2]:.4f}"
          + (f", validation accuracy {best['val_accuracy']:.4f}" if best else ""))


def read_unlabelled(words, params):
    """The unlabelled reviews as padded ids, encoded as prepare encodes the training split."""
    data = params["data"]
    ids = encode(unlabelled_texts(ARCHIVE), words[2:], data["seq_len"], data["truncate"], data["pad"], PROCESSES)
    if not len(ids):
        raise PipelineError(f"{ARCHIVE} has no unlabelled reviews (train/unsup/) for virtual adversarial training: "
                            "set virtual_adversarial to 0, or use the official archive")
    log_line(f"virtual adversarial training: {len(ids)} unlabelled reviews")
    return ids


def warm_start(params):
    """(the layers that start from pretrained weights, the epochs they stay frozen, the learning rate
    after those): the language model's embedding and LSTM, the pretrained vectors, or nothing."""
    if params["lm"]["use"]:
        return ("embedding", "lstm"), params["lm"]["frozen_epochs"], params["lm"]["fine_tune_lr"]
    if params["pretrain"]["use"]:
        return ("embedding",), params["pretrain"]["frozen_epochs"], params["pretrain"]["fine_tune_lr"]
    return (), 0, params["lr"]


def keep_checkpoint(made_for, log, rng, best, step, net, tlx, average):
    """What the epoch after log[-1]'s needs, for a run that resumes after a kill."""
    optimizer = backend.optimizer_state(step) if step else {}
    save_checkpoint({"fingerprint": made_for, "epoch": log[-1][0], "log": log, "rng": rng.bit_generator.state,
                     "optimizer": list(optimizer), "best": best and {k: v for k, v in best.items() if k != "weights"},
                     "average": average.total if average else None},
                    {"weights": [tlx.convert_to_numpy(w) for w in net.all_weights],
                     "optimizer": list(optimizer.values()), "rng": backend.rng_state() or [],
                     "best_weights": best["weights"] if best else [], "average": average.values if average else []})


@contextlib.contextmanager
def epoch_log(folder):
    """dvclive's Live in `folder`, ended when the block ends; when it fails the folder goes, as every
    unfinished output does (the checkpoint keeps the epochs: a resumed run logs them again)."""
    live = Live(str(folder), dvcyaml=False, save_dvc_exp=False, report=None)
    try:
        yield live
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    live.end()


def log_epoch(live, row, validation):
    """One epoch's figures to dvclive: metrics/epochs/metrics.json says the latest and the step (what
    `dvc exp show` shows of a running experiment), plots/metrics/*.tsv each epoch's (`dvc plots show`)."""
    live.step = row[0]
    for name, value in zip(["loss", "accuracy", "val_loss", "val_accuracy"][:4 if validation else 2], row[1:]):
        live.log_metric(name, value)
    live.next_step()


if __name__ == "__main__":
    run_stage(main)
