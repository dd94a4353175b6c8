"""prepare: reviews → tokens → vocabulary from the training split → padded int64 id arrays.

Reads data/raw/aclImdb_v1.tar.gz (streamed, never extracted); writes data/tokens/{train,test}.npz
(every review's words as positions in the training split's word list, most frequent first: what the
baseline reads, whatever the data params) and data/prepared/{train,test}_ids.npy (n, seq_len) int64,
{train,test}_labels.npy int64 (1 = positive) and vocab.json (the words by id plus the encoding
settings, for reading new text later).
"""
import time
from pathlib import Path

import numpy as np

from imdb_lstm.archive import labelled_splits
from imdb_lstm.errors import run_stage
from imdb_lstm.files import atomic_dir, write_json
from imdb_lstm.params import load_params
from imdb_lstm.text import PROCESSES, corpus_ids, pad_rows, rank_words, save_corpus, vocabulary

ARCHIVE = Path("data/raw/aclImdb_v1.tar.gz")
TOKENS = Path("data/tokens")
OUT = Path("data/prepared")


def main():
    params = load_params()["data"]
    start = time.perf_counter()
    splits = labelled_splits(ARCHIVE)
    words, *train = rank_words(splits["train"][0], PROCESSES)
    corpora = {"train": train, "test": corpus_ids(splits["test"][0], words, PROCESSES)}
    with atomic_dir(TOKENS) as tmp:
        for split, (ids, offsets) in corpora.items():
            save_corpus(tmp / f"{split}.npz", ids, offsets, splits[split][1])
    with atomic_dir(OUT) as tmp:
        for split, (ids, offsets) in corpora.items():
            np.save(tmp / f"{split}_ids.npy", pad_rows(ids, offsets, params["vocab_size"], params["seq_len"],
                                                      params["truncate"], params["pad"]))
            np.save(tmp / f"{split}_labels.npy", splits[split][1])
        encoding = {key: params[key] for key in ("seq_len", "truncate", "pad")}
        write_json(tmp / "vocab.json", {"encoding": encoding, "words": vocabulary(words, params["vocab_size"])})
    counts = ", ".join(f"{len(labels)} {split}" for split, (_, labels) in splits.items())
    print(f"prepare: {counts} reviews, {min(len(words), params['vocab_size']) + 2} ids, seq_len {params['seq_len']} "
          f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_stage(main)
