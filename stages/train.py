"""train: fit the LSTM classifier on the training split with TensorLayerX.

Reads data/prepared/train_*.npy and vocab.json (and data/pretrained/vectors.npy with pretrain.use, data/lm/ with
lm.use); writes data/model/ (model.json, weights.npz, and train.json: the backend, device and the kept epoch's
figures) and, through dvclive, metrics/epochs/ (each epoch's, as it ends: what `dvc exp show` and `dvc plots
show` read). The loop (imdb_lstm/loop.py) keeps a checkpoint after each epoch: a run that was killed resumes
after its last whole epoch, and ends as an uninterrupted run would; a finished run keeps its last one, so a
longer run (`dvc exp run -S epochs=10` after 5) trains only the epochs it adds.
With `validation` > 0 it holds out that fraction of the training split (never the test split),
stops once the validation loss has not improved for `patience` epochs, and keeps the best epoch.
With pretrain.use the embedding starts from the pretrained vectors and stays frozen for the first
pretrain.frozen_epochs epochs; the epochs after those tune it too, at pretrain.fine_tune_lr.
With lm.use the embedding and LSTM start from the language model's (stages/lm.py) and stay frozen
for the first lm.frozen_epochs epochs, which train the layers above them; then all, at lm.fine_tune_lr
(with lm.fine_tune ulmfit: one layer more each epoch, ULMFiT's layer-wise rates and slanted triangle).
With virtual_adversarial > 0 it also reads the 50,000 unlabelled reviews of data/raw/aclImdb_v1.tar.gz
(never the test split), one batch of them beside each labelled batch (imdb_lstm/training.py).
With weight_average > 0 it keeps a moving average of the weights (training.WeightAverage): validation
scores the average, and the model saved is the average (of the kept epoch's end, with validation).
With distributed.processes > 1 it trains in that many processes under torchrun (imdb_lstm/distributed.py).
"""
import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
from dvclive import Live

from imdb_lstm import backend, distributed, model
from imdb_lstm.archive import unlabelled_texts
from imdb_lstm.checkpoint import CHECKPOINT, fingerprint
from imdb_lstm.errors import PipelineError, run_stage
from imdb_lstm.files import atomic_dir, sha256_file, write_json
from imdb_lstm.language_model import start_from_lm
from imdb_lstm.loop import fit
from imdb_lstm.params import load_params
from imdb_lstm.progress import log_line
from imdb_lstm.text import PROCESSES, encode
from imdb_lstm.training import hold_out, start_from_vectors

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
    if distributed.wanted(params):
        return distributed.launch("stages.train", params["distributed"]["processes"])
    ids, labels, held = hold_out(np.load(DATA / "train_ids.npy"), np.load(DATA / "train_labels.npy"),
                                 params["validation"], params["seed"])
    backend.load(params["backend"], params["device"], params["reproducible"])
    words = json.loads((DATA / "vocab.json").read_text())["words"]
    unlabelled = read_unlabelled(words, params) if params["virtual_adversarial"] else None
    group = distributed.join(params["distributed"]["comm"])
    backend.seed(params["seed"])
    net = model.SentimentLSTM(len(words), **params["model"])
    if params["lm"]["use"]:
        start_from_lm(net, LM, words)
    elif params["pretrain"]["use"]:
        start_from_vectors(net, np.load(PRETRAINED / "vectors.npy"))
    task = model.ClassifierTask(
        net, ids, labels, epochs=params["epochs"], batch_size=params["batch_size"], lr=params["lr"],
        seed=params["seed"], held=held, patience=params["patience"], trim=params["model"]["trim_padding"],
        unlabelled=unlabelled, adversarial=params["adversarial"], virtual_adversarial=params["virtual_adversarial"],
        **warm_start(params))
    # without `epochs`, a finished run's checkpoint lets a longer run go on from its last epoch; ulmfit's rates
    # follow a schedule over all epochs, so its checkpoints are for one `epochs` only
    spans_run = task.fine_tune == "ulmfit"
    made_for = fingerprint({k: v for k, v in params.items() if k != "epochs" or spans_run},
                           [*INPUTS, Path(__file__)], backend.version())

    def publish(result):
        kept = result.kept
        best = result.best and {"best_epoch": kept.epoch, **kept.held_out}
        with atomic_dir(MODEL) as tmp:
            model.save_model(net, tmp, vocabulary=sha256_file(DATA / "vocab.json"))
            write_json(tmp / "train.json", {"backend": backend.version(), "device": backend.device(),
                                            "reproducible": params["reproducible"], "epochs": params["epochs"],
                                            "epochs_run": len(result.log), "loss": kept.loss,
                                            "accuracy": kept.accuracy, **(best or {})})
        print(f"train: {len(result.log)} epochs on {backend.version()} ({backend.device()}) in {result.seconds:.0f} "
              f"s; kept epoch {kept.epoch}: loss {kept.loss:.4f}, train accuracy {kept.accuracy:.4f}"
              + (f", validation accuracy {kept.held_out['val_accuracy']:.4f}" if best else ""))

    with epoch_log(EPOCHS) if group is None or group.main else contextlib.nullcontext() as live:
        fit(task, CHECKPOINT, made_for, publish, params["weight_average"], live, group)


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
    """The layers that start from pretrained weights (from the bottom up), the epochs they stay frozen, and how
    they are tuned after those: the language model's embedding and LSTM, the pretrained vectors, or nothing."""
    lm = params["lm"]
    if lm["use"]:
        return {"warm_layers": ("embedding", "lstm"), "frozen_epochs": lm["frozen_epochs"],
                "fine_tune_lr": lm["fine_tune_lr"], "fine_tune": lm["fine_tune"]}
    pretrain = params["pretrain"]
    if pretrain["use"]:
        return {"warm_layers": ("embedding",), "frozen_epochs": pretrain["frozen_epochs"],
                "fine_tune_lr": pretrain["fine_tune_lr"]}
    return {}


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


if __name__ == "__main__":
    run_stage(main, lock=not distributed.launched())  # the processes of a run: their launcher holds the lock
