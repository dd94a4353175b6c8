"""From review text to fixed-length rows of word ids: tokenizer, vocabulary, padding."""
import hashlib
import json
import multiprocessing
import os
import re
import signal

import numpy as np

from imdb_lstm.files import write_npz

PAD, UNKNOWN = 0, 1  # reserved ids; words start at 2
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text):
    """Lower-cased words; the reviews' HTML line breaks count as spaces."""
    return _TOKEN.findall(text.replace("<br />", " ").lower())


def rank_words(texts, processes=1):
    """(words, ids, offsets): every word of the texts, most frequent first (ties alphabetically, so the
    order is stable), and the texts as one corpus of positions in `words` (see corpus_ids)."""
    seen, first_seen, offsets = _index_words(texts, processes)
    counts = np.bincount(first_seen, minlength=len(seen)).tolist()
    order = sorted(range(len(seen)), key=lambda i: (-counts[i], seen[i]))
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return [seen[i] for i in order], rank[first_seen], offsets


def vocabulary(ranked, size):
    """The model's words by id: padding, unknown, then the `size` most frequent of `ranked` (rank_words')."""
    return ["<pad>", "<unk>", *ranked[:size]]


def words_sha256(words):
    """What identifies a vocabulary (the words by id), whatever file holds it."""
    return hashlib.sha256(json.dumps(words).encode()).hexdigest()


def corpus_ids(texts, words, processes=1):
    """(ids, offsets): the texts' words as one int32 array of positions in `words` (-1: a word not in
    it); text k is ids[offsets[k]:offsets[k + 1]]."""
    seen, ids, offsets = _index_words(texts, processes)
    position = {word: i for i, word in enumerate(words)}
    return np.array([position.get(word, -1) for word in seen], dtype=np.int32)[ids], offsets


CHUNK = 2500  # texts a process tokenizes at a time
# processes for the stages to tokenize with side by side; more than 4 gain little over reading the archive
PROCESSES = min(os.cpu_count() or 1, 4)


def _index_words(texts, processes):
    """(words in order of first appearance, the texts' words as int32 positions in them, offsets).
    With processes > 1, chunks of texts are tokenized side by side; the result is the same."""
    chunks = [texts[i:i + CHUNK] for i in range(0, len(texts), CHUNK)]
    if processes > 1 and len(chunks) > 1:
        with multiprocessing.get_context("fork").Pool(processes, initializer=_leave_signals_to_parent) as pool:
            parts = pool.map(_index_chunk, chunks)
    else:
        parts = map(_index_chunk, chunks)
    index, ids, lengths = {}, [np.zeros(0, dtype=np.int32)], [np.zeros(1, dtype=np.int64)]
    for words, chunk_ids, chunk_lengths in parts:
        ids.append(np.array([index.setdefault(word, len(index)) for word in words], dtype=np.int32)[chunk_ids])
        lengths.append(chunk_lengths)
    return list(index), np.concatenate(ids), np.cumsum(np.concatenate(lengths))


def _index_chunk(texts):
    index, ids, lengths = {}, [], []
    for text in texts:
        tokens = tokenize(text)
        ids += [index.setdefault(word, len(index)) for word in tokens]
        lengths.append(len(tokens))
    return list(index), np.array(ids, dtype=np.int32), np.array(lengths, dtype=np.int64)


def _leave_signals_to_parent():
    """A worker ignores Ctrl-C and dies quietly on SIGTERM: the stage's process handles both."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pad_rows(ids, offsets, vocab_size, seq_len, truncate, pad):
    """An int64 array (reviews, seq_len) of model ids from a corpus: the `vocab_size` most frequent words
    get ids from 2 on, the rest UNKNOWN; each review truncated and padded as asked."""
    model_ids = np.where((ids >= 0) & (ids < vocab_size), ids.astype(np.int64) + 2, UNKNOWN)
    kept = np.minimum(np.diff(offsets), seq_len)
    first = offsets[1:] - kept if truncate == "pre" else offsets[:-1]  # the first token each row keeps
    column = seq_len - kept if pad == "pre" else np.zeros_like(kept)  # where it goes
    step = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)  # 0, 1, ... within each row
    rows = np.full((len(kept), seq_len), PAD, dtype=np.int64)
    row, within = np.repeat(np.arange(len(kept)), kept), np.repeat(column, kept) + step
    rows[row, within] = model_ids[np.repeat(first, kept) + step]
    return rows


def encode(texts, words, seq_len, truncate, pad, processes=1):
    """An int64 array (len(texts), seq_len) of the texts' word ids, truncated and padded as asked."""
    return pad_rows(*corpus_ids(texts, words, processes), len(words), seq_len, truncate, pad)


def save_corpus(path, ids, offsets, labels):
    """A split as prepare writes it to data/tokens/ and baseline reads it: ids, offsets, labels."""
    write_npz(path, [ids, offsets, labels])


def load_corpus(path):
    """(ids, offsets, labels) of a split that save_corpus wrote."""
    with np.load(path, allow_pickle=False) as arrays:
        return arrays["0"], arrays["1"], arrays["2"]


def lengths(rows):
    """Words in each row of ids (the ids that are not padding)."""
    return (rows != PAD).sum(axis=1)


def trim_padding(rows):
    """`rows` without the columns that are padding in every row (one column stays if all are).

    Padding sits on one side of each row, so the dropped columns are the batch's shared padding."""
    words = (rows != PAD).any(axis=0)
    return rows[:, words] if words.any() else rows[:, :1]
