"""imdb_lstm/progress.py: bars on a terminal, a line a minute in a log."""
import sys

import pytest

from imdb_lstm import progress


def test_progress_bars_draw_on_a_terminal_only(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    for terminal, drawn in ((True, True), (False, False)):
        monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
        with progress.bar(total=3, desc="epoch 1/1") as bar:
            bar.update(3)
        progress.log_line("epoch 1/1: loss 0.5")
        err = capsys.readouterr().err
        assert ("epoch 1/1: 100%" in err) is drawn
        assert ("epoch 1/1: loss 0.5" in err) is not drawn, "a log gets one line instead"
    monkeypatch.setenv("TQDM_DISABLE", "1")  # a terminal with bars turned off gets the log lines
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress.bar(total=3, desc="epoch 1/1") as bar:
        bar.update(3)
    progress.log_line("epoch 1/1: loss 0.5")
    assert capsys.readouterr().err == "epoch 1/1: loss 0.5\n"


def test_a_log_gets_a_progress_line_every_interval(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    monkeypatch.setenv("TQDM_MININTERVAL", "0")  # every update is past the interval
    with progress.bar(total=200, desc="epoch 2/8", unit=" reviews") as bar:
        bar.update(64)
        bar.set_postfix(loss="0.6931")
        bar.update(64)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" [")[0] for line in lines] == ["epoch 2/8: 32% 64/200 reviews",
                                                       "epoch 2/8: 64% 128/200 reviews"]
    assert lines[1].endswith("loss=0.6931]") and "loss" not in lines[0]
    for _ in progress.bar(iterable=iter("ab"), desc="reading reviews", unit=" reviews"):
        pass
    assert capsys.readouterr().err.splitlines()[-1].startswith("reading reviews: 2 reviews [")
    monkeypatch.delenv("TQDM_MININTERVAL")  # a minute by default: quick work prints nothing
    with progress.bar(total=200, desc="epoch 2/8") as bar:
        bar.update(200)
    monkeypatch.setenv("TQDM_MININTERVAL", "0")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    with progress.bar(total=200, desc="epoch 2/8") as bar:
        bar.update(200)
    assert capsys.readouterr().err == ""


def test_a_log_line_says_what_a_bar_would(monkeypatch, capsys):
    """tqdm's defaults (no description, unit "it", counted from `initial`), its rate and remaining time
    from the elapsed seconds, postfix values joined as tqdm joins them; a line once `every` has passed."""
    monkeypatch.setenv("TQDM_MININTERVAL", "10")
    clock = iter([100.0, 110.0, 115.0, 125.0, 0.0, 10.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = progress.LogLines(total=4000, initial=1000, unit_scale=True)
    bar.update(1000)  # at exactly `every`
    bar.set_postfix(loss="0.5", accuracy="0.75")
    bar.update()  # 5 s after the last line: none
    bar.update(998)
    progress.LogLines(total=3, desc="epoch 1/2", unit=" reviews").update()
    assert capsys.readouterr().err.splitlines() == [
        "50% 2.00k/4.00kit [00:10<00:20, 100it/s]",
        "75% 3.00k/4.00kit [00:25<00:12, 80.0it/s, loss=0.5, accuracy=0.75]",
        "epoch 1/2: 33% 1/3 reviews [00:10<00:20, 10.00s/ reviews]",
    ]


def test_a_log_line_bar_lets_exceptions_through():
    with pytest.raises(ValueError):
        with progress.LogLines(total=1):
            raise ValueError
