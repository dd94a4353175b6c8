"""Values from outside in error messages: quoted, and cut short with their size when long."""
from imdb_lstm.errors import quote


def test_quote_keeps_short_values_whole_and_cuts_long_ones_with_their_size():
    assert quote("x" * 10) == repr("x" * 10)
    assert quote("x" * 198) == repr("x" * 198)  # 200 characters with its quotes: kept whole
    assert quote("x" * 200, repr_=False) == "x" * 200
    assert quote("x" * 201, repr_=False) == "x" * 200 + "... (201 characters)"
    assert quote(list(range(10_000))).endswith("...]")  # reprlib shortens containers before we cut
