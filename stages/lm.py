"""lm: an LSTM language model on the training and unlabelled reviews, for train to start from (lm.use).

Reads data/raw/aclImdb_v1.tar.gz (the 25,000 training and 50,000 unlabelled reviews; never the
test split), and with pretrain.use data/pretrained/vectors.npy (the LM's embedding starts from them).
Its vocabulary is prepare's (the data.vocab_size most frequent words of the training split), made
here from the archive, not read from data/prepared/vocab.json: that file also holds data.seq_len and
the padding settings, and a change to those must not cost a new language model. Writes data/lm/
(imdb_lstm/language_model.py: the embedding and LSTM that train starts from) and metrics/lm.json:
the LM's perplexity and next-word accuracy on held-out reviews (2 % of those it reads, chosen by the
seed, never trained on). Perplexity and accuracy count the "rarer word" class as one word (see language_model.py).
The reviews, in a seeded order, make one stream of words, cut into rows of lm.steps words; each
epoch visits the rows in a new seeded order, lm.batch_size at a time, each from a zero state (as the
classifier reads a review). Every CHECKPOINT_STEPS steps it keeps a checkpoint: a killed run
resumes from there, and ends as an uninterrupted run would.
With lm.use false nothing reads the LM, so the stage only writes data/lm/unused.txt (no backend is
loaded): turning `use` on reruns it, and train after it.
"""
import math
import time
from pathlib import Path

import numpy as np

from imdb_lstm import backend
from imdb_lstm.archive import sorted_reviews
from imdb_lstm.checkpoint import fingerprint, load_checkpoint, remove_checkpoint, save_checkpoint
from imdb_lstm.errors import PipelineError, check_interrupted, run_stage
from imdb_lstm.files import atomic_dir, write_json
from imdb_lstm.params import load_params
from imdb_lstm.progress import bar, log_line
from imdb_lstm.text import PROCESSES, UNKNOWN, corpus_ids, rank_words, vocabulary, words_sha256
from imdb_lstm.training import CountingLoss, start_from_vectors

ARCHIVE = Path("data/raw/aclImdb_v1.tar.gz")
VECTORS = Path("data/pretrained/vectors.npy")
OUT = Path("data/lm")
METRICS = Path("metrics/lm.json")
CHECKPOINT = Path(".checkpoints/lm")
CHECKPOINT_STEPS = 500  # about two minutes of the measured recipe's steps on a 2-core CPU (EXPERIMENTS.md)
HELD_OUT = 0.02  # of the reviews, for perplexity


def split_reviews(documents, seed):
    """(training stream, held-out stream): the reviews in a seeded order, 2 % (at least one) held out,
    each part's reviews joined into one stream of word ids."""
    order = np.random.default_rng([seed, 2]).permutation(len(documents))
    held = max(1, round(len(documents) * HELD_OUT))
    if len(documents) - held < 1:
        raise PipelineError(f"the language model needs at least two reviews, the archive has {len(documents)}")
    join = lambda part: np.concatenate([documents[i] for i in part]).astype(np.int64)  # noqa: E731
    return join(order[held:]), join(order[:held])


def held_out_scores(tlx, net, inputs, next_words, batch_size):
    """(perplexity, accuracy) of the next words on held-out rows."""
    total, correct = 0.0, 0
    with backend.no_grad():
        for start in range(0, len(inputs), batch_size):
            logits = tlx.convert_to_numpy(net(tlx.convert_to_tensor(inputs[start:start + batch_size])))
            logits = logits.astype(np.float64)
            wanted = targets(next_words[start:start + batch_size], net.config["output_words"]).ravel()
            top = logits.max(axis=1)
            log_sum = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
            total += float((log_sum - logits[np.arange(len(wanted)), wanted]).sum())
            correct += int((logits.argmax(axis=1) == wanted).sum())
    words = next_words.size
    return math.exp(total / words), correct / words


def main():
    params = load_params()
    lm = params["lm"]
    if not lm["use"]:
        with atomic_dir(OUT) as tmp:
            (tmp / "unused.txt").write_text("lm.use is false: no language model; train starts as it would without\n")
        write_json(METRICS, {"used": False})
        print("lm: skipped (lm.use is false)")
        return
    start = time.perf_counter()
    reviews = sorted_reviews(ARCHIVE, include_unsup=True)["train"]
    ranked, _, _ = rank_words([text for label, _, text in reviews if label >= 0], PROCESSES)
    words = vocabulary(ranked, params["data"]["vocab_size"])
    if lm["output_words"] > len(words):
        raise PipelineError(f"lm.output_words {lm['output_words']} is more than the {len(words)} word ids: "
                            "lower it, or raise data.vocab_size")
    ids, offsets = corpus_ids([text for _, _, text in reviews], words, PROCESSES)
    documents = np.split(np.where(ids < 0, UNKNOWN, ids), offsets[1:-1])  # -1: a word outside the vocabulary
    stream, held_stream = split_reviews(documents, params["seed"])
    inputs, next_words = windows_or_refuse(stream, lm["steps"], "training")
    held_inputs, held_next = windows_or_refuse(held_stream, lm["steps"], "held-out")

    tlx = backend.load(params["backend"], params["device"], params["reproducible"])
    from imdb_lstm.language_model import LanguageModel, save_lm

    model = params["model"]
    backend.seed(params["seed"])
    net = LanguageModel(len(words), model["embedding_dim"], model["hidden_size"], model["num_layers"],
                        lm["output_words"])
    if params["pretrain"]["use"]:
        start_from_vectors(net, np.load(VECTORS))
    loss_fn = CountingLoss(tlx)
    step = tlx.model.TrainOneStep(tlx.model.WithLoss(net, loss_fn), tlx.optimizers.Adam(lr=lm["lr"]),
                                  list(net.trainable_weights))
    rng = np.random.default_rng(params["seed"])
    made_for = fingerprint(params, [ARCHIVE, VECTORS, Path(__file__)], backend.version())
    log, epoch, done, sums = [], 1, 0, [0.0, 0, 0]
    epoch_rng = rng.bit_generator.state
    saved = load_checkpoint(made_for, CHECKPOINT)
    if saved:
        state, arrays = saved
        tlx.files.assign_weights(arrays["weights"], net)
        backend.restore_optimizer(step, dict(zip(state["optimizer"], arrays["optimizer"])))
        log, epoch, done, sums, epoch_rng = state["log"], state["epoch"], state["done"], state["sums"], state["rng"]
        log_line(f"lm: resuming epoch {epoch} after {done} of its steps, from the checkpoint in {CHECKPOINT}")
    net.set_train()
    batch = lm["batch_size"]
    steps_per_epoch = math.ceil(len(inputs) / batch)
    for epoch in range(epoch, lm["epochs"] + 1):
        rng.bit_generator.state = epoch_rng
        order = rng.permutation(len(inputs))
        desc = f"lm epoch {epoch}/{lm['epochs']}"
        epoch_start = time.perf_counter()
        with bar(total=steps_per_epoch, initial=done, desc=desc, unit=" steps") as progress:
            for index in range(done, steps_per_epoch):
                check_interrupted()
                rows = order[index * batch:(index + 1) * batch]
                loss_fn.correct = 0
                loss = float(step(tlx.convert_to_tensor(inputs[rows]),
                                  tlx.convert_to_tensor(targets(next_words[rows], lm["output_words"]).ravel())))
                if not math.isfinite(loss):
                    raise PipelineError(f"the language model's loss became {loss}: lower lm.lr in params.yaml")
                sums = [sums[0] + loss * rows.size * lm["steps"], sums[1] + loss_fn.correct,
                        sums[2] + rows.size * lm["steps"]]
                progress.update(1)
                progress.set_postfix(loss=f"{sums[0] / sums[2]:.3f}")
                if (index + 1) % CHECKPOINT_STEPS == 0 and index + 1 < steps_per_epoch:
                    keep_checkpoint(made_for, tlx, net, step, log, epoch, index + 1, sums, epoch_rng)
                    log_line(f"{desc}: {index + 1}/{steps_per_epoch} steps, loss {sums[0] / sums[2]:.4f}")
        net.set_eval()
        perplexity, accuracy = held_out_scores(tlx, net, held_inputs, held_next, batch)
        net.set_train()
        log.append([epoch, round(sums[0] / sums[2], 6), round(sums[1] / sums[2], 6), round(perplexity, 4),
                    round(accuracy, 6)])
        done, sums, epoch_rng = 0, [0.0, 0, 0], rng.bit_generator.state
        if epoch < lm["epochs"]:
            keep_checkpoint(made_for, tlx, net, step, log, epoch + 1, 0, sums, epoch_rng)
        log_line(f"{desc}: train loss {log[-1][1]:.4f}, held-out perplexity {perplexity:.2f}, next-word accuracy "
                 f"{log[-1][4]:.4f} in {time.perf_counter() - epoch_start:.0f} s")

    with atomic_dir(OUT) as tmp:
        save_lm(net, tmp, words_sha256=words_sha256(words))
    write_json(METRICS, {"used": True, "backend": backend.version(), "epochs": lm["epochs"],
                         "train_words": int(next_words.size), "held_out_words": int(held_next.size),
                         "loss": log[-1][1], "accuracy": log[-1][2], "perplexity": log[-1][3],
                         "next_word_accuracy": log[-1][4],
                         "log": [dict(zip(["epoch", "loss", "accuracy", "perplexity", "next_word_accuracy"], row))
                                 for row in log]})
    remove_checkpoint(CHECKPOINT)
    print(f"lm: {lm['epochs']} epochs over {next_words.size} words on {backend.version()} in "
          f"{time.perf_counter() - start:.0f} s; held-out perplexity {log[-1][3]:.2f}")


def targets(ids, output_words):
    """The class of each word id: the id itself below output_words - 1, else the "rarer word" class
    (prepare gives the most frequent words the lowest ids)."""
    return np.minimum(ids, output_words - 1)


def windows(stream, steps):
    """The stream of word ids cut into (inputs, next words) rows of `steps` words: inputs row i is
    stream[i*steps:(i+1)*steps], its next words the same shifted by one. The tail that fills no row is
    left out."""
    rows = (len(stream) - 1) // steps
    return stream[:rows * steps].reshape(rows, steps), stream[1:rows * steps + 1].reshape(rows, steps)


def windows_or_refuse(stream, steps, part):
    if len(stream) <= steps:
        raise PipelineError(f"the {part} reviews hold {len(stream)} words, not enough for one row of lm.steps "
                            f"{steps}: lower lm.steps")
    return windows(stream, steps)


def keep_checkpoint(made_for, tlx, net, step, log, epoch, done, sums, epoch_rng):
    """What resuming at step `done` of `epoch` needs."""
    optimizer = backend.optimizer_state(step)
    save_checkpoint({"fingerprint": made_for, "epoch": epoch, "done": done, "log": log, "sums": sums,
                     "rng": epoch_rng, "optimizer": list(optimizer)},
                    {"weights": [tlx.convert_to_numpy(w) for w in net.all_weights],
                     "optimizer": list(optimizer.values())}, CHECKPOINT)


if __name__ == "__main__":
    run_stage(main)
