"""lm: an LSTM language model on the training and unlabelled reviews, for train to start from (lm.use).

Reads data/raw/aclImdb_v1.tar.gz (the 25,000 training and 50,000 unlabelled reviews; never the
test split), and with pretrain.use data/pretrained/vectors.npy (the LM's embedding starts from them).
Its vocabulary is prepare's (the data.vocab_size most frequent words of the training split), made
here from the archive, not read from data/prepared/vocab.json: that file also holds data.seq_len and
the padding settings, and a change to those must not cost a new language model. Writes data/lm/
(imdb_lstm/language_model.py: the embedding and LSTM that train starts from) and metrics/lm.json:
the LM's perplexity and next-word accuracy on held-out reviews (2 % of those it reads, chosen by the
seed, never trained on). With the narrow softmax, perplexity and accuracy count the "rarer word" class as one
word (see language_model.py). The reviews, in a seeded order, make one stream of words, cut into rows of
lm.steps words, or with lm.carry_state into lm.batch_size lanes read side by side in order
(language_model.LanguageModelTask says how they are trained). The loop (imdb_lstm/loop.py) keeps a
checkpoint every few hundred steps: a killed run resumes from there, and ends as an uninterrupted run would.
With lm.use false nothing reads the LM, so the stage only writes data/lm/unused.txt (no backend is
loaded): turning `use` on reruns it, and train after it. With distributed.processes > 1 it trains in that many
processes under torchrun (imdb_lstm/distributed.py).
"""
import time
from pathlib import Path

import numpy as np

from imdb_lstm import backend, distributed, language_model
from imdb_lstm.archive import sorted_reviews
from imdb_lstm.checkpoint import fingerprint
from imdb_lstm.errors import PipelineError, run_stage
from imdb_lstm.files import atomic_dir, write_json
from imdb_lstm.language_model import LanguageModelTask, lanes, review_streams, save_lm
from imdb_lstm.loop import fit
from imdb_lstm.params import load_params
from imdb_lstm.text import PROCESSES, UNKNOWN, corpus_ids, rank_words, vocabulary, words_sha256
from imdb_lstm.training import start_from_vectors

ARCHIVE = Path("data/raw/aclImdb_v1.tar.gz")
VECTORS = Path("data/pretrained/vectors.npy")
OUT = Path("data/lm")
METRICS = Path("metrics/lm.json")
CHECKPOINT = Path(".checkpoints/lm")


def main():
    params, start = load_params(), time.perf_counter()
    lm, model = params["lm"], params["model"]
    if not lm["use"]:
        with atomic_dir(OUT) as tmp:
            (tmp / "unused.txt").write_text("lm.use is false: no language model; train starts as it would without\n")
        write_json(METRICS, {})  # DVC needs the file; no figures
        print("lm: skipped (lm.use is false)")
        return
    if distributed.wanted(params):
        return distributed.launch("stages.lm", params["distributed"]["processes"])
    words, documents = read_reviews(params["data"]["vocab_size"])
    if lm["softmax"] == "narrow" and lm["output_words"] > len(words):
        raise PipelineError(f"lm.output_words {lm['output_words']} is more than the {len(words)} word ids: "
                            "lower it, or raise data.vocab_size")
    stream, held_stream = review_streams(documents, params["seed"])
    (rows, next_words, count), (held_rows, held_next_words, held_count) = (
        lanes(part, lm["batch_size"] if lm["carry_state"] else 0, lm["steps"], name)
        for part, name in ((stream, "training"), (held_stream, "held-out")))

    backend.load(params["backend"], params["device"], params["reproducible"])
    group = distributed.join(params["distributed"]["comm"])
    backend.seed(params["seed"])
    net = language_model.LanguageModel(len(words), model["embedding_dim"], model["hidden_size"], model["num_layers"],
                                       lm["output_words"], lm["softmax"], lm["dropout"], lm["carry_state"],
                                       mixed_precision=backend.device() == "gpu")
    if params["pretrain"]["use"]:
        start_from_vectors(net, np.load(VECTORS))
    task = LanguageModelTask(net, rows, next_words, held_rows, held_next_words, epochs=lm["epochs"],
                             batch_size=lm["batch_size"], lr=lm["lr"], seed=params["seed"], lanes=count,
                             held_lanes=held_count, lr_schedule=lm["schedule"])

    def publish(result):
        with atomic_dir(OUT) as tmp:
            save_lm(net, tmp, words_sha256=words_sha256(words))
        last = result.log[-1]
        write_json(METRICS, {"epochs": lm["epochs"],
                             "train_words": int(next_words.size), "held_out_words": int(held_next_words.size),
                             "loss": last.loss, "accuracy": last.accuracy, **last.held_out,
                             "log": [{"epoch": r.epoch, **r.figures()} for r in result.log]})
        print(f"lm: {lm['epochs']} epochs over {next_words.size} words on {backend.version()} in "
              f"{time.perf_counter() - start:.0f} s; held-out perplexity {last.held_out['perplexity']:.2f}")

    fit(task, CHECKPOINT, fingerprint(params, [ARCHIVE, VECTORS, Path(__file__)], backend.version()), publish,
        group=group)


def read_reviews(vocab_size):
    """(prepare's vocabulary, each training and unlabelled review as an array of word ids in it)."""
    reviews = sorted_reviews(ARCHIVE, include_unsup=True)["train"]
    ranked, _, _ = rank_words([text for label, _, text in reviews if label >= 0], PROCESSES)
    words = vocabulary(ranked, vocab_size)
    ids, offsets = corpus_ids([text for _, _, text in reviews], words, PROCESSES)
    return words, np.split(np.where(ids < 0, UNKNOWN, ids), offsets[1:-1])  # -1: a word outside the vocabulary


if __name__ == "__main__":
    run_stage(main, lock=not distributed.launched())  # the processes of a run: their launcher holds the lock
