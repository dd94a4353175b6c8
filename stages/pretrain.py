"""pretrain: word vectors from the training and unlabelled reviews, for the LSTM's embedding to start from.

Reads data/raw/aclImdb_v1.tar.gz (the 25,000 training and 50,000 unlabelled reviews; never the
test split) and data/prepared/vocab.json; writes data/pretrained/vectors.npy, one row per word
id, (ids, model.embedding_dim) float32. The vectors are the truncated SVD of the words' positive
pointwise mutual information (PPMI) within `pretrain.window` words (Levy, Goldberg and Dagan,
"Improving distributional similarity with lessons learned from word embeddings", TACL 2015):
no backend, no random draws beyond a seeded SVD, a minute on a CPU.
With pretrain.use false nothing reads the vectors, so the stage only writes data/pretrained/unused.txt
(a few tenths of a second): turning `use` on reruns it, and train after it.
"""
import json
import time
from pathlib import Path

import numpy as np

from imdb_lstm.archive import pretraining_texts
from imdb_lstm.errors import PipelineError, run_stage
from imdb_lstm.files import atomic_dir
from imdb_lstm.params import load_params
from imdb_lstm.text import PAD, PROCESSES, UNKNOWN, corpus_ids

ARCHIVE = Path("data/raw/aclImdb_v1.tar.gz")
VOCAB = Path("data/prepared/vocab.json")
OUT = Path("data/pretrained")
CONTEXT_SMOOTHING = 0.75  # raise context counts to this power: rare contexts get less inflated PMI (ibid.)


def cooccurrences(documents, size, window):
    """Sparse symmetric (size, size) counts of word pairs at most `window` apart, weighted 1/distance."""
    import scipy.sparse  # here, not at the top: with pretrain.use false the stage never needs it

    words = np.concatenate(documents)
    document = np.repeat(np.arange(len(documents), dtype=np.int32), [len(d) for d in documents])
    counts = scipy.sparse.csr_matrix((size, size))
    for distance in range(1, window + 1):
        same = document[distance:] == document[:-distance]
        left, right = words[:-distance][same], words[distance:][same]
        counts += scipy.sparse.csr_matrix((np.full(len(left), 1.0 / distance), (left, right)), shape=(size, size))
    counts = counts + counts.T
    # padding never occurs in text; unknown words are not one word, so they give no vector
    keep = np.ones(size)
    keep[[PAD, UNKNOWN]] = 0
    diagonal = scipy.sparse.diags(keep)
    return (diagonal @ counts @ diagonal).tocsr()


def ppmi(counts):
    """max(0, log p(w, c) / (p(w) p_smoothed(c))) for the non-zero pairs, as a sparse matrix."""
    import scipy.sparse

    total = counts.sum()
    word_p = np.asarray(counts.sum(axis=1)).ravel() / total
    context = np.asarray(counts.sum(axis=0)).ravel() ** CONTEXT_SMOOTHING
    context_p = context / context.sum()
    pairs = counts.tocoo()
    pmi = np.log(pairs.data / total) - np.log(word_p[pairs.row]) - np.log(context_p[pairs.col])
    positive = pmi > 0
    return scipy.sparse.csr_matrix((pmi[positive], (pairs.row[positive], pairs.col[positive])), shape=counts.shape)


def main():
    params = load_params()
    if not params["pretrain"]["use"]:
        with atomic_dir(OUT) as tmp:
            (tmp / "unused.txt").write_text("pretrain.use is false: no vectors; train starts its embedding at random\n")
        print("pretrain: skipped (pretrain.use is false)")
        return
    from sklearn.utils.extmath import randomized_svd

    window, dim = params["pretrain"]["window"], params["model"]["embedding_dim"]
    start = time.perf_counter()
    try:
        words = json.loads(VOCAB.read_text())["words"]
    except FileNotFoundError:
        raise PipelineError(f"no vocabulary at {VOCAB}: run `dvc repro prepare` first") from None
    if dim >= len(words) - 2:
        raise PipelineError(f"model.embedding_dim {dim} needs more than {dim} words in the vocabulary: "
                            f"raise data.vocab_size above it")
    ids, offsets = corpus_ids(pretraining_texts(ARCHIVE), words, PROCESSES)
    documents = np.split(np.where(ids < 0, UNKNOWN, ids), offsets[1:-1])  # -1: a word outside the vocabulary
    matrix = ppmi(cooccurrences(documents, len(words), window))
    u, s, _ = randomized_svd(matrix, dim, n_iter=5, random_state=0)
    vectors = (u * np.sqrt(s)).astype(np.float32)  # sqrt(s): the symmetric split of the SVD (ibid.)
    with atomic_dir(OUT) as tmp:
        np.save(tmp / "vectors.npy", vectors)
    print(f"pretrain: {dim}-dimensional vectors for {len(words)} ids from {len(documents)} reviews "
          f"({matrix.nnz} word-context pairs) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    run_stage(main)
