"""From review text to fixed-length rows of word ids: tokenizer, vocabulary, padding."""
import collections
import itertools
import re

import numpy as np

PAD, UNKNOWN = 0, 1  # reserved ids; words start at 2
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text):
    """Lower-cased words; the reviews' HTML line breaks count as spaces."""
    return _TOKEN.findall(text.replace("<br />", " ").lower())


def build_vocab(token_lists, size):
    """The `size` most frequent words, most frequent first (ties alphabetically, so it is stable)."""
    counts = collections.Counter(itertools.chain.from_iterable(token_lists))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [word for word, _ in ranked[:size]]


def encode(token_lists, words, seq_len, truncate, pad):
    """An int64 array (len(token_lists), seq_len) of word ids, truncated and padded as asked."""
    ids = {word: i for i, word in enumerate(words, start=2)}
    rows = np.full((len(token_lists), seq_len), PAD, dtype=np.int64)
    for row, tokens in zip(rows, token_lists):
        kept = tokens[-seq_len:] if truncate == "pre" else tokens[:seq_len]
        row_ids = [ids.get(token, UNKNOWN) for token in kept]
        if pad == "pre":
            row[seq_len - len(row_ids):] = row_ids
        else:
            row[: len(row_ids)] = row_ids
    return rows


def lengths(rows):
    """Words in each row of ids (the ids that are not padding)."""
    return (rows != PAD).sum(axis=1)


def trim_padding(rows):
    """`rows` without the columns that are padding in every row (one column stays if all are).

    Padding sits on one side of each row, so the dropped columns are the batch's shared padding."""
    words = (rows != PAD).any(axis=0)
    return rows[:, words] if words.any() else rows[:, :1]
