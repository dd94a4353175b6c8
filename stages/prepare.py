"""prepare: reviews → vocabulary from the training split → padded int64 id arrays.

Reads data/raw/aclImdb_v1.tar.gz (streamed, never extracted); writes data/prepared/
{train,test}_ids.npy (n, seq_len) int64, {train,test}_labels.npy int64 (1 = positive)
and vocab.json (the words by id plus the encoding settings, for reading new text later).
"""
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from imdb_lstm.archive import iter_reviews
from imdb_lstm.errors import PipelineError, run_stage
from imdb_lstm.files import atomic_dir, write_json
from imdb_lstm.params import load_params
from imdb_lstm.text import build_vocab, encode, tokenize

ARCHIVE = Path("data/raw/aclImdb_v1.tar.gz")
OUT = Path("data/prepared")


def read_splits(archive):
    """{split: (token lists, labels)}, each split in a fixed order whatever the archive's order."""
    splits = {"train": [], "test": []}
    for review in tqdm(iter_reviews(archive), desc="prepare", unit=" reviews", leave=False):
        splits[review.split].append((review.label, int(review.id), tokenize(review.text)))
    result = {}
    for split, reviews in splits.items():
        reviews.sort(key=lambda r: r[:2])
        labels = np.array([label for label, _, _ in reviews], dtype=np.int64)
        if set(labels.tolist()) != {0, 1}:
            found = sorted(set(labels.tolist())) or "no reviews"
            raise PipelineError(f"{archive}: the {split} split needs positive and negative reviews, found {found}")
        result[split] = ([tokens for _, _, tokens in reviews], labels)
    return result


def main():
    params = load_params()["data"]
    start = time.perf_counter()
    splits = read_splits(ARCHIVE)
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
