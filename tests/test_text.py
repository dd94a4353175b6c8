import numpy as np
import pytest

from imdb_lstm.text import PAD, UNKNOWN, build_vocab, encode, lengths, tokenize, trim_padding


def test_tokenize_lowercases_and_treats_html_breaks_as_spaces():
    assert tokenize("Great film!<br /><br />I didn't LIKE it... 10/10") == [
        "great", "film", "i", "didn't", "like", "it", "10", "10"]


def test_vocab_is_most_frequent_first_with_alphabetical_ties():
    docs = [["b", "a", "c"], ["c", "b"], ["c", "d"]]
    assert build_vocab(docs, 3) == ["c", "b", "a"]
    assert build_vocab(docs, 10) == ["c", "b", "a", "d"]


@pytest.mark.parametrize("truncate, pad, expected", [
    ("pre", "pre", [[3, 4, 1], [PAD, PAD, 2]]),
    ("post", "pre", [[2, 3, 4], [PAD, PAD, 2]]),
    ("pre", "post", [[3, 4, 1], [2, PAD, PAD]]),
    ("post", "post", [[2, 3, 4], [2, PAD, PAD]]),
])
def test_encode_truncates_and_pads_on_the_side_asked(truncate, pad, expected):
    words = ["a", "b", "c"]  # ids 2, 3, 4
    rows = encode([["a", "b", "c", "zzz"], ["a"]], words, 3, truncate, pad)
    assert rows.dtype == np.int64
    assert rows.tolist() == expected


def test_unknown_words_and_empty_reviews():
    rows = encode([["nope"], []], ["a"], 2, "pre", "pre")
    assert rows.tolist() == [[PAD, UNKNOWN], [PAD, PAD]]


@pytest.mark.parametrize("pad", ["pre", "post"])
def test_trim_padding_drops_only_the_padding_all_rows_share(pad):
    rows = encode([["a", "b", "c"], ["a"], ["b", "c"]], ["a", "b", "c"], 6, "pre", pad)
    trimmed = trim_padding(rows)
    assert trimmed.tolist() == (rows[:, -3:] if pad == "pre" else rows[:, :3]).tolist()
    assert lengths(trimmed).tolist() == lengths(rows).tolist() == [3, 1, 2]
    assert trim_padding(encode([[], []], ["a"], 4, "pre", pad)).tolist() == [[PAD], [PAD]]
