"""prepare: reviews → vocabulary from the training split → padded int64 id arrays.

Reads data/raw/aclImdb_v1.tar.gz (streamed, never extracted); writes data/prepared/
{train,test}_ids.npy (n, seq_len) int64, {train,test}_labels.npy int64 (1 = positive)
and vocab.json (the words by id plus the encoding settings, for reading new text later).
"""
import time
from pathlib import Path

import numpy as np

from imdb_lstm.archive import labelled_splits
from imdb_lstm.errors import run_stage
from imdb_lstm.files import atomic_dir, write_json
from imdb_lstm.params import load_params
from imdb_lstm.text import build_vocab, encode, tokenize

ARCHIVE = Path("data/raw/aclImdb_v1.tar.gz")
OUT = Path("data/prepared")


def main():
    params = load_params()["data"]
    start = time.perf_counter()
    splits = {split: ([tokenize(text) for text in texts], labels)
              for split, (texts, labels) in labelled_splits(ARCHIVE).items()}
    words = build_vocab(splits["train"][0], params["vocab_size"])
    with atomic_dir(OUT) as tmp:
        for split, (token_lists, labels) in splits.items():
            ids = encode(token_lists, words, params["seq_len"], params["truncate"], params["pad"])
            np.save(tmp / f"{split}_ids.npy", ids)
            np.save(tmp / f"{split}_labels.npy", labels)
        encoding = {key: params[key] for key in ("seq_len", "truncate", "pad")}
        write_json(tmp / "vocab.json", {"encoding": encoding, "words": ["<pad>", "<unk>", *words]})
    counts = ", ".join(f"{len(labels)} {split}" for split, (_, labels) in splits.items())
    print(f"prepare: {counts} reviews, {len(words) + 2} ids, seq_len {params['seq_len']} "
          f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_stage(main)
