"""The LSTM language model the `lm` stage trains, and how train starts the classifier from it.

`LanguageModel` exists once `imdb_lstm.backend.load(...)` has run, as model.py's SentimentLSTM. The LM
is the classifier's embedding and LSTM (params.yaml's model.embedding_dim, hidden_size, num_layers; one
direction) with a softmax on top that predicts the next word. A softmax over the whole vocabulary would
cost 5-10x the rest of a step on a CPU (CONTRIBUTING.md, `lm.output_words`); this one predicts the next
word among the `output_words` - 1 lowest ids, which are the most frequent words (prepare ranks them),
and one class for every rarer word: a narrow softmax whose cost does not grow with the vocabulary.

Saved as data/lm/lm.json (the architecture and the sha256 of its words by id) and weights.npz
(embedding, LSTM, then the output layer, in `all_weights` order; tlx's npz layout).
"""
import json
from pathlib import Path

from imdb_lstm import backend
from imdb_lstm.errors import PipelineError, quote
from imdb_lstm.files import read_weights, write_npz
from imdb_lstm.text import words_sha256

ARCHITECTURE = ("vocab_size", "embedding_dim", "hidden_size", "num_layers")  # what the classifier must share


class LanguageModelLayers:
    """LanguageModel's layers and forward pass, joined to the loaded backend's tlx.nn.Module by `__getattr__`."""

    def __init__(self, vocab_size, embedding_dim, hidden_size, num_layers, output_words):
        super().__init__()
        tlx = backend.tlx()
        self.config = {"vocab_size": vocab_size, "embedding_dim": embedding_dim, "hidden_size": hidden_size,
                       "num_layers": num_layers, "output_words": output_words}
        # the same layers, built the same way, as SentimentLSTM's: their weights fit one another
        self.embedding = tlx.nn.Embedding(vocab_size, embedding_dim)
        self.lstm = tlx.nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.output = tlx.nn.Linear(in_features=hidden_size, out_features=output_words)

    def forward(self, ids):
        """(batch × steps, output_words) logits of each next word, row by row."""
        states, _ = self.lstm(self.embedding(ids))
        return self.output(backend.tlx().reshape(states, (-1, self.config["hidden_size"])))


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
