import numpy as np
import pytest

from imdb_lstm.text import (
    CHUNK,
    PAD,
    UNKNOWN,
    corpus_ids,
    encode,
    lengths,
    load_corpus,
    pad_rows,
    rank_words,
    save_corpus,
    tokenize,
    trim_padding,
)


def test_tokenize_lowercases_and_treats_html_breaks_as_spaces():
    assert tokenize("Great film!<br /><br />I didn't LIKE it... 10/10") == [
        "great", "film", "i", "didn't", "like", "it", "10", "10"]


def test_words_are_ranked_most_frequent_first_with_alphabetical_ties():
    docs = ["B a c", "c b", "", "c<br />d"]
    words, ids, offsets = rank_words(docs)
    assert words == ["c", "b", "a", "d"]
    assert ids.dtype == np.int32 and offsets.tolist() == [0, 3, 5, 5, 7]
    assert [[words[i] for i in ids[a:b]] for a, b in zip(offsets[:-1], offsets[1:])] == [tokenize(d) for d in docs]


def test_processes_side_by_side_give_the_same_corpus():
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice([f"w{i}" for i in range(500)], n)) for n in rng.integers(0, 20, 3 * CHUNK + 7)]
    alone, side_by_side = rank_words(texts), rank_words(texts, processes=2)
    assert alone[0] == side_by_side[0] and len(alone[0]) == 500
    assert all((a == b).all() for a, b in zip(alone[1:], side_by_side[1:]))
    test = corpus_ids(texts[::-1], alone[0][:300])
    assert all((a == b).all() for a, b in zip(test, corpus_ids(texts[::-1], alone[0][:300], processes=2)))


def test_corpus_ids_mark_words_outside_the_list_and_round_trip_through_a_file(tmp_path):
    ids, offsets = corpus_ids(["a zzz", "", "c"], ["c", "b", "a"])
    assert ids.tolist() == [2, -1, 0] and offsets.tolist() == [0, 2, 2, 3]
    assert ids.dtype == np.int32  # data/tokens' format: 12 M words, half the bytes of int64
    save_corpus(tmp_path / "split.npz", ids, offsets, np.array([1, 0, 1]))
    loaded = load_corpus(tmp_path / "split.npz")
    assert [a.tolist() for a in loaded] == [[2, -1, 0], [0, 2, 2, 3], [1, 0, 1]]


def test_a_corpus_file_holding_pickled_objects_is_refused(tmp_path):
    arrays = {"0": np.array([{"not": "numbers"}], dtype=object), "1": np.zeros(2), "2": np.zeros(1)}
    np.savez(tmp_path / "split.npz", **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):
        load_corpus(tmp_path / "split.npz")


def reference_row(tokens, words, seq_len, truncate, pad):
    """One review, encoded one word at a time: what pad_rows computes for all of them at once."""
    ids = [words.index(t) + 2 if t in words else UNKNOWN for t in tokens]
    ids = ids[-seq_len:] if truncate == "pre" else ids[:seq_len]
    padding = [PAD] * (seq_len - len(ids))
    return padding + ids if pad == "pre" else ids + padding


@pytest.mark.parametrize("truncate", ["pre", "post"])
@pytest.mark.parametrize("pad", ["pre", "post"])
def test_pad_rows_matches_encoding_each_review_alone(truncate, pad):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    docs = [list(rng.choice(words + ["oov"], n)) for n in rng.integers(0, 15, 200)]
    ranked, ids, offsets = rank_words([" ".join(d) for d in docs])
    vocab_size = 12  # fewer than the words: the rest become UNKNOWN
    rows = pad_rows(ids, offsets, vocab_size, 9, truncate, pad)
    assert rows.dtype == np.int64
    assert rows.tolist() == [reference_row(d, ranked[:vocab_size], 9, truncate, pad) for d in docs]


@pytest.mark.parametrize("truncate, pad, expected", [
    ("pre", "pre", [[3, 4, 1], [PAD, PAD, 2]]),
    ("post", "pre", [[2, 3, 4], [PAD, PAD, 2]]),
    ("pre", "post", [[3, 4, 1], [2, PAD, PAD]]),
    ("post", "post", [[2, 3, 4], [2, PAD, PAD]]),
])
def test_encode_truncates_and_pads_on_the_side_asked(truncate, pad, expected):
    words = ["a", "b", "c"]  # ids 2, 3, 4
    rows = encode(["a b c zzz", "a"], words, 3, truncate, pad)
    assert rows.dtype == np.int64
    assert rows.tolist() == expected


def test_unknown_words_and_empty_reviews():
    rows = encode(["nope", ""], ["a"], 2, "pre", "pre")
    assert rows.tolist() == [[PAD, UNKNOWN], [PAD, PAD]]


@pytest.mark.parametrize("pad", ["pre", "post"])
def test_trim_padding_drops_only_the_padding_all_rows_share(pad):
    rows = encode(["a b c", "a", "b c"], ["a", "b", "c"], 6, "pre", pad)
    trimmed = trim_padding(rows)
    assert trimmed.tolist() == (rows[:, -3:] if pad == "pre" else rows[:, :3]).tolist()
    assert lengths(trimmed).tolist() == lengths(rows).tolist() == [3, 1, 2]
    assert trim_padding(encode(["", ""], ["a"], 4, "pre", pad)).tolist() == [[PAD], [PAD]]


def test_the_vocabulary_is_padding_unknown_then_the_most_frequent_words():
    from imdb_lstm.text import vocabulary
    assert vocabulary(["the", "a", "film", "plot"], 2) == ["<pad>", "<unk>", "the", "a"]
    assert vocabulary(["the"], 5) == ["<pad>", "<unk>", "the"]
    assert vocabulary(["the", "a"], 0) == ["<pad>", "<unk>"]
