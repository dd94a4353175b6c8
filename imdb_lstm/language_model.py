"""The LSTM language model the `lm` stage trains, and how train starts the classifier from it.

`LanguageModel` exists once `imdb_lstm.backend.load(...)` has run, as model.py's SentimentLSTM. The LM
is the classifier's embedding and LSTM (params.yaml's model.embedding_dim, hidden_size, num_layers; one
direction) with a softmax on top that predicts the next word, one of two kinds (`lm.softmax`):
- narrow: the next word among the `output_words` - 1 lowest ids, which are the most frequent words
  (prepare ranks them), and one class for every rarer word. Its cost does not grow with the vocabulary; a
  softmax over the whole vocabulary costs a CPU 5-10x the rest of a step (CONTRIBUTING.md, `lm.output_words`).
- tied: every word of the vocabulary, scored by the embedding's own vectors (the LSTM's state projected
  to the embedding's width, then a dot product with each word's vector, plus a bias per word): the
  language models of Inan et al. 2017 and Merity et al. 2018, which a GPU trains at LSTM-1152 in minutes.

Saved as data/lm/lm.json (the architecture and the sha256 of its words by id) and weights.npz
(embedding, LSTM, then the output layers, in `all_weights` order; tlx's npz layout).
"""
import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imdb_lstm import backend
from imdb_lstm.errors import PipelineError, quote
from imdb_lstm.files import read_weights, write_npz
from imdb_lstm.text import words_sha256
from imdb_lstm.training import CountingLoss, make_step, slanted_rate

CHECKPOINT_STEPS = 500  # steps between checkpoints within an epoch: minutes of the LM on a 2-core CPU
ARCHITECTURE = ("vocab_size", "embedding_dim", "hidden_size", "num_layers")  # what the classifier must share


class LanguageModelLayers:
    """LanguageModel's layers and forward pass, joined to the loaded backend's tlx.nn.Module by `__getattr__`.
    With `carry_state` each forward pass starts from the LSTM state the previous one ended with (`carried`,
    None: zeros), as a stream read window after window; no gradient flows back into the previous window.
    With `mixed_precision` the tied softmax's product with every word's vector runs in bfloat16 (the logits
    and the loss stay float32)."""

    def __init__(self, vocab_size, embedding_dim, hidden_size, num_layers, output_words, softmax="narrow",
                 dropout=0.0, carry_state=False, mixed_precision=False):
        super().__init__()
        tlx = backend.tlx()
        self.config = {"vocab_size": vocab_size, "embedding_dim": embedding_dim, "hidden_size": hidden_size,
                       "num_layers": num_layers, "output_words": output_words}
        if softmax != "narrow":  # written only when used: a narrow LM keeps the lm.json it had before
            self.config = {**self.config, "output_words": vocab_size, "softmax": softmax}
        self.carry_state, self.carried = carry_state, None
        # the tied softmax's product in bfloat16 (stages/lm.py asks for it on a GPU): most of a step's work
        self.mixed_precision = mixed_precision
        # the same layers, built the same way, as SentimentLSTM's: their weights fit one another
        self.embedding = tlx.nn.Embedding(vocab_size, embedding_dim)
        self.lstm = tlx.nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.dropout = tlx.nn.Dropout(p=dropout) if dropout else None
        if softmax == "tied":
            self.project = tlx.nn.Linear(in_features=hidden_size, out_features=embedding_dim)
            self.word_bias = backend.module_class(BiasLayers)(vocab_size)
        else:
            self.output = tlx.nn.Linear(in_features=hidden_size, out_features=output_words)

    def forward(self, ids):
        """(batch × steps, output words) logits of each next word, row by row."""
        tlx = backend.tlx()
        states, last = self.lstm(self.embedding(ids), self.carried)
        if self.carry_state:
            self.carried = backend.detach(last)
        states = tlx.reshape(states, (-1, self.config["hidden_size"]))
        if self.dropout:
            states = self.dropout(states)
        if self.config.get("softmax") == "tied":
            with backend.mixed_precision() if self.mixed_precision else contextlib.nullcontext():
                logits = tlx.matmul(self.project(states), tlx.transpose(self.embedding.embeddings))
            return self.word_bias(tlx.cast(logits, tlx.float32))  # the softmax and its loss in float32
        return self.output(states)


class BiasLayers:
    """A learned number per class, added to the logits (the tied softmax's word bias): a layer of its own,
    so its weight comes after the embedding's and the LSTM's in `all_weights`."""

    def __init__(self, size):
        super().__init__()
        tlx = backend.tlx()
        self.bias = self._get_weights("bias", shape=(size,), init=tlx.initializers.zeros())

    def forward(self, logits):
        return logits + self.bias


def __getattr__(name):
    """`LanguageModel`: LanguageModelLayers on the loaded backend's tlx.nn.Module."""
    if name == "LanguageModel":
        return backend.module_class(LanguageModelLayers)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def save_lm(net, folder, words_sha256):
    """Write lm.json and weights.npz into `folder` (which the caller makes atomic)."""
    folder = Path(folder)
    info = {**net.config, "trained_on": backend.version(), "words_sha256": words_sha256}
    (folder / "lm.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    write_npz(folder / "weights.npz", [backend.tlx().convert_to_numpy(w) for w in net.all_weights])


def start_from_lm(net, folder, words):
    """Set a SentimentLSTM's embedding and LSTM to the language model's in `folder`. The LM must have
    been trained with the same `words` by id and the same embedding and LSTM sizes."""
    folder = Path(folder)
    try:
        info = json.loads((folder / "lm.json").read_bytes())
    except FileNotFoundError:
        raise PipelineError(f"no language model in {folder}: run `dvc repro lm` with lm.use true") from None
    except (OSError, ValueError) as error:
        raise PipelineError(f"{folder}/lm.json is damaged ({quote(str(error), repr_=False)}): "
                            "rerun `dvc repro lm`") from None
    if not isinstance(info, dict) or info.get("words_sha256") != words_sha256(words):
        raise PipelineError(f"the language model in {folder} was trained on another vocabulary: rerun `dvc repro lm`")
    if net.config["bidirectional"] or any(info.get(key) != net.config[key] for key in ARCHITECTURE):
        sizes = lambda config: ", ".join(f"{key} {quote(config.get(key))}" for key in ARCHITECTURE)  # noqa: E731
        raise PipelineError(f"the language model in {folder} ({sizes(info)}) does not fit the classifier "
                            f"({sizes(net.config)}, bidirectional {str(net.config['bidirectional']).lower()}): "
                            "the classifier must have its sizes and read one way; rerun `dvc repro lm` with this "
                            "params.yaml")
    layers = [*net.embedding.all_weights, *net.lstm.all_weights]
    weights = read_weights(folder / "weights.npz", [tuple(w.shape) for w in layers], "lm.json",
                           "rerun `dvc repro lm`")
    assign = backend.tlx().files.assign_weights
    assign(weights[:1], net.embedding)
    assign(weights[1:], net.lstm)


HELD_OUT = 0.02  # of the reviews, for perplexity


def review_streams(documents, seed):
    """(training stream, held-out stream): the reviews (arrays of word ids) in a seeded order, 2 % (at least
    one) held out, each part's reviews joined into one stream of word ids."""
    order = np.random.default_rng([seed, 2]).permutation(len(documents))
    held = max(1, round(len(documents) * HELD_OUT))
    if len(documents) - held < 1:
        raise PipelineError(f"the language model needs at least two reviews, the archive has {len(documents)}")
    return tuple(np.concatenate([documents[i] for i in part]).astype(np.int64) for part in (order[held:], order[:held]))


def windows(stream, steps, part):
    """The stream of word ids cut into (inputs, next words) rows of `steps` words: inputs row i is
    stream[i*steps:(i+1)*steps], its next words the same shifted by one. The tail that fills no row is
    left out; a stream too short for one row is refused, naming its `part`."""
    if len(stream) <= steps:
        raise PipelineError(f"the {part} reviews hold {len(stream)} words, not enough for one row of lm.steps "
                            f"{steps}: lower lm.steps")
    rows = (len(stream) - 1) // steps
    return stream[:rows * steps].reshape(rows, steps), stream[1:rows * steps + 1].reshape(rows, steps)


def lanes(stream, count, steps, part):
    """(inputs, next words, lanes): the stream cut into `count` lanes of equal length (fewer where it is too
    short for a row in each), each lane cut into rows by windows(), the rows lane by lane: lane j's k-th row
    is row j * (rows per lane) + k. A model that carries its state reads each lane in order (lane_batches).
    `count` 0: the rows of windows(), to be read in any order, and lanes 0."""
    if not count:
        return *windows(stream, steps, part), 0
    count = max(1, min(count, len(stream) // (steps + 1)))
    length = len(stream) // count
    parts = [windows(stream[j * length:(j + 1) * length], steps, part) for j in range(count)]
    return np.concatenate([rows for rows, _ in parts]), np.concatenate([words for _, words in parts]), count


def lane_batches(rows, count):
    """The batches that read `count` lanes of rows (lanes()) side by side, in order: batch k holds each
    lane's k-th row."""
    per_lane = rows // count
    return [np.arange(count) * per_lane + k for k in range(per_lane)]


def targets(ids, output_words):
    """The class of each word id: the id itself below output_words - 1, else the "rarer word" class
    (prepare gives the most frequent words the lowest ids)."""
    return np.minimum(ids, output_words - 1)


@dataclass
class LanguageModelTask:
    """What `lm` trains (loop.fit runs it): the rows of the training stream (`rows`, `next_words`), in a new
    seeded order each epoch, `batch_size` at a time, each row from a zero state (as the classifier reads a
    review), with Adam at `lr` (or on a slanted triangle, `lr_schedule`); a checkpoint every CHECKPOINT_STEPS
    steps; after each epoch, perplexity and next-word accuracy on the held-out rows. Both count the "rarer
    word" class as one word.
    With `lanes` (the rows made by lanes(), `held_lanes` likewise) each batch is the next row of every lane
    and the net carries its LSTM state from one batch to the next; the state starts from zeros at each
    epoch, at the held-out rows, and every CHECKPOINT_STEPS steps, where a checkpoint holds none of it."""

    net: object
    rows: np.ndarray
    next_words: np.ndarray
    held_rows: np.ndarray
    held_next_words: np.ndarray
    epochs: int
    batch_size: int
    lr: float
    seed: int
    lanes: int = 0
    held_lanes: int = 0
    lr_schedule: str = "constant"  # or "slanted": training.slanted_rate over the run's steps, `lr` at its top
    name, unit, loss_name, lr_setting = "lm", " steps", "language model's loss", "lm.lr"
    checkpoint_steps, keep_last_checkpoint, monitor, patience = CHECKPOINT_STEPS, False, None, 1

    def __post_init__(self):
        self.loss_fn = CountingLoss(backend.tlx())
        self.uses_dropout = self.net.dropout is not None

    def batches(self, rng):
        if self.lanes:
            return lane_batches(len(self.rows), self.lanes)
        order = rng.permutation(len(self.rows))
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def size(self, batch):
        return 1

    def inputs(self, epoch, batches, start, part):
        tlx = backend.tlx()
        for index, rows in enumerate(batches[start:], start):
            if index % self.checkpoint_steps == 0:
                self.net.carried = None
            wanted = targets(part(self.next_words[rows]), self.net.config["output_words"]).ravel()
            yield [tlx.convert_to_tensor(part(self.rows[rows])), tlx.convert_to_tensor(wanted)], wanted.size

    def new_phase(self, epoch):
        return False

    def make_step(self, epoch):
        return make_step(backend.tlx(), self.net, self.loss_fn, list(self.net.trainable_weights), self.lr)

    def schedule(self, epoch, index, count):
        if self.lr_schedule != "slanted":
            return None
        rate = slanted_rate((epoch - 1) * count + index, self.epochs * count, self.lr)
        return lambda weight: rate

    def held_out(self):
        """Perplexity and accuracy of the next words on the held-out rows."""
        tlx, total, correct = backend.tlx(), 0.0, 0
        batches = (lane_batches(len(self.held_rows), self.held_lanes) if self.held_lanes else
                   [slice(start, start + self.batch_size) for start in range(0, len(self.held_rows), self.batch_size)])
        self.net.carried = None
        classes = self.net.config["output_words"]
        with backend.no_grad():  # on the backend: a batch's logits over a whole vocabulary are gigabytes in float64
            for rows in batches:
                logits = tlx.cast(self.net(tlx.convert_to_tensor(self.held_rows[rows])), tlx.float64)
                wanted = targets(self.held_next_words[rows], classes).ravel()
                picked = tlx.gather(tlx.reshape(logits, (-1,)),
                                    tlx.convert_to_tensor(np.arange(len(wanted)) * classes + wanted))
                top = tlx.reduce_max(logits, axis=1, keepdims=True)
                log_sum = tlx.reshape(top, (-1,)) + tlx.log(tlx.reduce_sum(tlx.exp(logits - top), axis=1))
                total += float(tlx.convert_to_numpy(log_sum - picked).sum())
                correct += int((tlx.convert_to_numpy(tlx.argmax(logits, axis=1)) == wanted).sum())
        self.net.carried = None
        words = self.held_next_words.size
        return {"perplexity": round(math.exp(total / words), 4), "next_word_accuracy": round(correct / words, 6)}

    def describe(self, epoch):
        return f"lm epoch {epoch}/{self.epochs}"

    def describe_scores(self, scores):
        return (f", held-out perplexity {scores['perplexity']:.2f}, "
                f"next-word accuracy {scores['next_word_accuracy']:.4f}")
