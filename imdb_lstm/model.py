"""The classifier: Embedding → LSTM over time → mean over time → Linear+ReLU → Linear (2 logits).

`SentimentLSTM` is a tlx.nn.Module of the backend loaded, so it exists once `imdb_lstm.backend.load(...)`
has run; importing this module needs no backend.
Saved as two files in one folder: model.json (architecture, backend) and weights.npz
(tlx's `npz` layout, members "0", "1", ... in `all_weights` order, which loads on either backend).
ClassifierTask is how `train` trains it (imdb_lstm/loop.py runs it).
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imdb_lstm import backend
from imdb_lstm.errors import PipelineError, get_it_by, quote
from imdb_lstm.files import read_weights, weight_shapes, write_npz
from imdb_lstm.metrics import loss_and_accuracy
from imdb_lstm.params import BACKENDS, SCHEMA, check
from imdb_lstm.text import PAD, lengths, trim_padding
from imdb_lstm.training import CountingLoss, batch_order, make_step, slanted_rate, unlabelled_batches

POOLED_VECTORS = {"masked_mean_max": 2, "last_max_mean": 3}  # vectors a pooling joins; the others, one
# model.json: the architecture, checked as params.yaml's `model:` is, plus the vocabulary size.
MODEL_FILE_SCHEMA = {"vocab_size": (int, lambda v: 3 <= v <= 1_000_002, "an integer from 3 to 1000002"),
                     **SCHEMA["model"]}


class SentimentLSTMLayers:
    """SentimentLSTM's layers and forward pass, joined to the loaded backend's tlx.nn.Module by
    `__getattr__` below. The defaults are the tutorial's model; the options (params.yaml's `model:`)
    make larger ones."""

    def __init__(self, vocab_size, embedding_dim, hidden_size, bidirectional=False, num_layers=1,
                 pooling="mean", dropout=0.0, trim_padding=False, embedding_dropout=0.0):
        super().__init__()
        tlx = backend.tlx()
        # trim_padding is how the model reads its input, not a layer: training feeds it batches of
        # similar-length reviews without their shared padding, predict_logits each review at its own length.
        self.config = {"vocab_size": vocab_size, "embedding_dim": embedding_dim, "hidden_size": hidden_size,
                       "bidirectional": bidirectional, "num_layers": num_layers, "pooling": pooling,
                       "dropout": dropout, "trim_padding": trim_padding, "embedding_dropout": embedding_dropout}
        self.pooling = pooling
        self.embedding = tlx.nn.Embedding(vocab_size, embedding_dim)
        # zeroes single numbers of the words' vectors while training, so no one feature of a word is relied on
        self.embedding_dropout = tlx.nn.Dropout(p=embedding_dropout) if embedding_dropout else None
        # batch_first=True: the recurrence runs over each review's words. The tutorial left tlx's
        # default (False), so it ran across the reviews of a batch instead.
        self.lstm = tlx.nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                                dropout=dropout if num_layers > 1 else 0.0, batch_first=True)
        features = hidden_size * (2 if bidirectional else 1) * POOLED_VECTORS.get(pooling, 1)
        self.dropout = tlx.nn.Dropout(p=dropout) if dropout else None
        self.dense = tlx.nn.Linear(in_features=features, out_features=hidden_size, act=tlx.nn.ReLU)
        self.classify = tlx.nn.Linear(in_features=hidden_size, out_features=2)

    def forward(self, ids):
        return self.read(self.embed(ids), ids)

    def embed(self, ids):
        """The words' vectors as the LSTM reads them (adversarial training pushes these: training.py)."""
        embedded = self.embedding(ids)
        return self.embedding_dropout(embedded) if self.embedding_dropout else embedded

    def read(self, embedded, ids):
        """The logits from embed()'s vectors; `ids` says where the padding is."""
        states, _ = self.lstm(embedded)
        features = self.pool(states, ids)
        if self.dropout:
            features = self.dropout(features)
        return self.classify(self.dense(features))

    def pool(self, states, ids):
        """One vector per review from the LSTM's states at every step; `masked_` skips padding, and so do
        last_max_mean's max and mean (ULMFiT's concat pooling: the last state, the maximum, the mean)."""
        tlx = backend.tlx()
        if self.pooling == "mean":
            return tlx.reduce_mean(states, axis=1)
        if self.pooling == "max":
            return tlx.reduce_max(states, axis=1)
        if self.pooling == "last":
            return states[:, -1, :]
        words = tlx.expand_dims(tlx.cast(ids != PAD, states.dtype), axis=-1)
        mean = tlx.reduce_sum(states * words, axis=1) / tlx.maximum(tlx.reduce_sum(words, axis=1), tlx.ones((1, 1)))
        if self.pooling == "masked_mean":
            return mean
        most = tlx.reduce_max(states - (1 - words) * 1e9, axis=1)
        if self.pooling == "masked_mean_max":
            return tlx.concat([mean, most], axis=1)
        return tlx.concat([states[:, -1, :], most, mean], axis=1)


def __getattr__(name):
    """`SentimentLSTM`: SentimentLSTMLayers on the loaded backend's tlx.nn.Module."""
    if name == "SentimentLSTM":
        return backend.module_class(SentimentLSTMLayers)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parameter_count(config):
    """How many numbers a SentimentLSTM of `config` holds, without building one: a model file is checked
    against it before any weight is allocated (tests/test_backends.py compares it with real models)."""
    e, h, layers = config["embedding_dim"], config["hidden_size"], config["num_layers"]
    directions = 2 if config["bidirectional"] else 1
    lstm = sum(directions * 4 * h * ((e if layer == 0 else h * directions) + h + 2) for layer in range(layers))
    features = h * directions * POOLED_VECTORS.get(config["pooling"], 1)
    return config["vocab_size"] * e + lstm + (features + 1) * h + (h + 1) * 2


def save_model(net, folder, vocabulary):
    """Write model.json and weights.npz into `folder` (which the caller makes atomic). `vocabulary` is
    the sha256 of the vocab.json the model was trained with, which predict checks."""
    folder = Path(folder)
    info = {**net.config, "trained_on": backend.version(), "vocabulary": vocabulary}
    if not info["embedding_dropout"]:  # written only when used: other models keep the bytes they had before it
        del info["embedding_dropout"]
    (folder / "model.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    write_npz(folder / "weights.npz", [backend.tlx().convert_to_numpy(w) for w in net.all_weights])


def load_model(folder):
    """The trained model in `folder`, in eval mode, on whichever backend is loaded; its `vocabulary`
    attribute is the sha256 of the vocab.json it was trained with. A damaged, foreign or absurd model
    folder is refused before anything is allocated for it."""
    folder = Path(folder)
    info = _read_model_json(folder / "model.json")
    vocabulary = info.pop("vocabulary", None)
    info.pop("trained_on", None)
    weights_file, fix = folder / "weights.npz", "retrain with `dvc repro train`"
    shapes = weight_shapes(weights_file, fix)
    if sum(math.prod(shape) for shape in shapes) != parameter_count(info):
        raise PipelineError(f"{weights_file} does not fit model.json: {fix}")
    net = backend.module_class(SentimentLSTMLayers)(**info)
    weights = read_weights(weights_file, [tuple(w.shape) for w in net.all_weights], "model.json", fix, exact=True)
    backend.tlx().files.assign_weights(weights, net)
    net.set_eval()
    net.vocabulary = vocabulary
    return net


def trained_backend(folder):
    """The backend that trained the model in `folder` (model.json's `trained_on`), or None where model.json
    names none of this project's (load_model says what is wrong with a missing or damaged folder)."""
    try:
        trained_on = _read_model_json(Path(folder) / "model.json").get("trained_on")
    except PipelineError:
        return None
    name = trained_on.split(" ")[0] if isinstance(trained_on, str) else None
    return name if name in BACKENDS else None


def _read_model_json(path):
    try:
        info = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise PipelineError(f"no trained model in {path.parent}: run {get_it_by('train')} first") from None
    except (OSError, ValueError) as error:  # ValueError: not JSON, not UTF-8
        raise PipelineError(f"{path} is damaged ({quote(str(error), repr_=False)}): retrain with "
                            "`dvc repro train`") from None
    if not isinstance(info, dict):
        raise PipelineError(f"{path} is damaged (not a JSON object): retrain with `dvc repro train`")
    extra = sorted(set(info) - set(MODEL_FILE_SCHEMA) - {"trained_on", "vocabulary"}, key=str)
    if extra:
        raise PipelineError(f"{path}: unknown key {quote(extra[0])}: it was not written by this project's "
                            "train stage; retrain with `dvc repro train`")
    info.setdefault("embedding_dropout", 0.0)  # save_model leaves it out when 0
    check({key: value for key, value in info.items() if key in MODEL_FILE_SCHEMA}, MODEL_FILE_SCHEMA, path)
    return info


def predict_logits(net, ids, batch_size=500):
    """The (len(ids), 2) logits for rows of word ids, in batches, without recording gradients.

    A model trained with trim_padding reads reviews of one length per batch and no padding, so each
    review gets the logits it would get alone, whatever else is being scored."""
    if net.config["trim_padding"]:
        row_lengths = lengths(ids)
        order = np.argsort(row_lengths, kind="stable")
        same_length = np.split(order, np.flatnonzero(np.diff(row_lengths[order])) + 1)
        batches = [group[start:start + batch_size] for group in same_length
                   for start in range(0, len(group), batch_size)]
    else:
        batches = [np.arange(start, min(start + batch_size, len(ids))) for start in range(0, len(ids), batch_size)]
    if len(ids) and ids.max() >= net.config["vocab_size"]:
        raise PipelineError(f"word ids reach {ids.max()}, but the model knows {net.config['vocab_size']} words: "
                            "the prepared data changed since training; run `dvc repro`")
    logits, tlx = np.empty((len(ids), 2)), backend.tlx()
    with backend.no_grad():
        for batch in batches:
            rows = trim_padding(ids[batch]) if net.config["trim_padding"] else ids[batch]
            logits[batch] = tlx.convert_to_numpy(net(tlx.convert_to_tensor(rows)))
    return logits


LAYER_RATE_DECAY = 2.6  # ULMFiT's: each layer group learns at the rate of the group above it / 2.6


@dataclass
class ClassifierTask:
    """What `train` trains (loop.fit runs it): batches of the labelled reviews in a seeded order (of similar
    length and without their shared padding with `trim`), an Adam step with the losses params ask for, the
    `warm_layers` (started from pretrained weights, listed from the bottom up) frozen for the first
    `frozen_epochs` epochs and all layers at `fine_tune_lr` after them; with `held` (validation ids, labels),
    early stopping on validation loss.
    `fine_tune` "ulmfit" (Howard & Ruder 2018) unfreezes the warm layers one an epoch, from the top, and moves
    each layer at the rate of the one above it / LAYER_RATE_DECAY, the rates rising and falling on a slanted
    triangle over the whole run's steps (training.slanted_rate) with `lr`, then `fine_tune_lr`, at its top."""

    net: object
    ids: np.ndarray
    labels: np.ndarray
    epochs: int
    batch_size: int
    lr: float
    seed: int
    held: tuple | None = None
    patience: int = 1
    trim: bool = False
    unlabelled: np.ndarray | None = None  # padded ids of reviews for virtual adversarial training
    adversarial: float = 0.0
    virtual_adversarial: float = 0.0
    warm_layers: tuple = ()
    frozen_epochs: int = 0
    fine_tune_lr: float | None = None
    fine_tune: str = "together"
    name, unit, loss_name, lr_setting = "train", " reviews", "training loss", "`lr`"
    checkpoint_steps, keep_last_checkpoint = None, True

    def __post_init__(self):
        self.loss_fn, self.review_lengths = CountingLoss(backend.tlx()), lengths(self.ids)
        self.trainable = list(self.net.trainable_weights)  # before any freezing: tlx caches this list
        self.monitor = "val_loss" if self.held is not None else None
        self.uses_dropout = bool(self.net.config["dropout"] or self.net.config["embedding_dropout"])
        # how many layer groups below the layers above the warm ones (0): the LSTM 1, the embedding 2
        self.depth = {id(w): len(self.warm_layers) - rank for rank, layer in enumerate(self.warm_layers)
                      for w in getattr(self.net, layer).all_weights}

    def batches(self, rng):
        return batch_order(self.review_lengths, self.batch_size, rng, by_length=self.trim)

    def size(self, batch):
        return len(batch)

    def inputs(self, epoch, batches, start, part):
        tlx = backend.tlx()
        # the epoch's own generator: a resumed run draws what an uninterrupted one did
        unlabelled = None if self.unlabelled is None else unlabelled_batches(
            self.unlabelled, len(batches), self.batch_size, np.random.default_rng([self.seed, 3, epoch]), self.trim,
            self.net.config["embedding_dim"])
        for index, batch in enumerate(batches):
            extra = next(unlabelled) if unlabelled else ()
            if index >= start:
                rows = trim_padding(self.ids[batch]) if self.trim else self.ids[batch]
                arrays = [part(a) for a in (rows, self.labels[batch], *extra)]
                yield [tlx.convert_to_tensor(a) for a in arrays], len(arrays[0])

    def frozen_layers(self, epoch):
        """The warm layers that `epoch` leaves as they are."""
        if epoch <= self.frozen_epochs:
            return self.warm_layers
        thawed = epoch - self.frozen_epochs if self.fine_tune == "ulmfit" else len(self.warm_layers)
        return self.warm_layers[:max(0, len(self.warm_layers) - thawed)]

    def new_phase(self, epoch):
        return epoch > 1 and self.frozen_layers(epoch) != self.frozen_layers(epoch - 1)

    def peak_lr(self, epoch):
        return self.fine_tune_lr if self.warm_layers and epoch > self.frozen_epochs else self.lr

    def make_step(self, epoch):
        return make_step(backend.tlx(), self.net, self.loss_fn, self.trainable, self.peak_lr(epoch),
                         [getattr(self.net, layer) for layer in self.frozen_layers(epoch)],
                         self.adversarial, self.virtual_adversarial)

    def schedule(self, epoch, index, count):
        if self.fine_tune != "ulmfit":
            return None
        rate = slanted_rate((epoch - 1) * count + index, self.epochs * count, self.peak_lr(epoch))
        return lambda weight: rate / LAYER_RATE_DECAY ** self.depth.get(id(weight), 0)

    def held_out(self):
        if self.held is None:
            return {}
        val_loss, val_accuracy = loss_and_accuracy(predict_logits(self.net, self.held[0]), self.held[1])
        return {"val_loss": round(val_loss, 6), "val_accuracy": round(val_accuracy, 6)}

    def describe(self, epoch):
        frozen = self.frozen_layers(epoch)
        frozen = f" ({' and '.join(frozen)} frozen)" if frozen else ""
        return f"epoch {epoch}/{self.epochs}{frozen}"

    def describe_scores(self, scores):
        return f", validation loss {scores['val_loss']:.4f}" if scores else ""
