"""Atomic, strict and reproducible writes (imdb_lstm/files.py)."""
import json
import math
import os

import numpy as np
import pytest

from imdb_lstm.errors import PipelineError
from imdb_lstm.files import atomic_dir, atomic_path, write_json, write_npz


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_metric_that_is_not_finite_is_never_written(tmp_path, bad):
    path = tmp_path / "train.json"
    path.write_text('{"loss": 0.5}\n')
    with pytest.raises(PipelineError, match="loss is not a finite number; nothing was written"):
        write_json(path, {"loss": bad, "accuracy": 0.5})
    assert json.loads(path.read_text()) == {"loss": 0.5} and os.listdir(tmp_path) == ["train.json"]


def test_weights_files_are_the_same_bytes_whenever_they_are_written(tmp_path, monkeypatch):
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float32)]
    write_npz(tmp_path / "a.npz", arrays)
    monkeypatch.setattr("time.time", lambda: 2_000_000_000.0)  # what np.savez would stamp into each member
    write_npz(tmp_path / "b.npz", arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "b.npz", allow_pickle=False) as saved:
        assert [saved[str(i)].tolist() for i in range(2)] == [a.tolist() for a in arrays]


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_an_output_is_replaced_only_when_its_block_succeeds(tmp_path, kind):
    target = tmp_path / "out"
    atomic = atomic_path if kind == "file" else atomic_dir
    target.write_text("old") if kind == "file" else (target.mkdir(), (target / "x").write_text("old"))
    with pytest.raises(RuntimeError):
        with atomic(target) as tmp:
            (tmp if kind == "file" else tmp / "x").write_text("half")
            assert (target if kind == "file" else target / "x").read_text() == "old", "not written in place"
            raise RuntimeError("killed while writing")
    assert (target if kind == "file" else target / "x").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "the temporary output is gone"
    with atomic(target) as tmp:
        (tmp if kind == "file" else tmp / "x").write_text("new")
    assert (target if kind == "file" else target / "x").read_text() == "new"


def test_progress_bars_draw_on_a_terminal_only(monkeypatch, capsys):
    import sys

    from imdb_lstm import progress
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    for terminal, drawn in ((True, True), (False, False)):
        monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
        with progress.bar(total=3, desc="epoch 1/1") as bar:
            bar.update(3)
        progress.log_line("epoch 1/1: loss 0.5")
        err = capsys.readouterr().err
        assert ("epoch 1/1: 100%" in err) is drawn
        assert ("epoch 1/1: loss 0.5" in err) is not drawn, "a log gets one line instead"


def test_an_interrupt_that_was_swallowed_still_stops_an_output_from_being_published(tmp_path, monkeypatch):
    from imdb_lstm import errors
    from imdb_lstm.files import atomic_dir, atomic_path

    monkeypatch.setattr(errors, "_interrupted", True)  # a stop signal whose KeyboardInterrupt was caught
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text("{}")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "weights.npz").write_bytes(b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
