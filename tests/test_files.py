"""Atomic, strict and reproducible writes (imdb_lstm/files.py)."""
import json
import math
import os

import numpy as np
import pytest

from imdb_lstm.errors import PipelineError
from imdb_lstm.files import atomic_dir, atomic_path, sha256_file, write_json, write_npz


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_metric_that_is_not_finite_is_never_written(tmp_path, bad):
    path = tmp_path / "train.json"
    path.write_text('{"loss": 0.5}\n')
    with pytest.raises(PipelineError, match="loss is not a finite number; nothing was written"):
        write_json(path, {"loss": bad, "accuracy": 0.5})
    assert json.loads(path.read_text()) == {"loss": 0.5} and os.listdir(tmp_path) == ["train.json"]


def test_metrics_files_are_sorted_indented_json_ending_in_a_newline(tmp_path):
    write_json(tmp_path / "eval.json", {"roc_auc": 0.9, "accuracy": 0.5, "confusion": [1, 2]})
    # the layout is part of the committed files' bytes: dvc.lock, git diffs and the golden hashes
    assert (tmp_path / "eval.json").read_text() == (
        '{\n  "accuracy": 0.5,\n  "confusion": [\n    1,\n    2\n  ],\n  "roc_auc": 0.9\n}\n')
    with pytest.raises(PipelineError, match="a value is not a finite number"):  # not at the top level
        write_json(tmp_path / "eval.json", {"per_epoch": [math.nan]})
    with pytest.raises(PipelineError, match=r"eval.json: accuracy, loss is not a finite number"):
        write_json(tmp_path / "eval.json", {"loss": math.nan, "accuracy": math.inf, "reviews": 3, "ok": 0.5})


def test_weights_files_are_the_same_bytes_whenever_they_are_written(tmp_path, monkeypatch):
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float32)]
    write_npz(tmp_path / "a.npz", arrays)
    monkeypatch.setattr("time.time", lambda: 2_000_000_000.0)  # what np.savez would stamp into each member
    write_npz(tmp_path / "b.npz", arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "b.npz", allow_pickle=False) as saved:
        assert [saved[str(i)].tolist() for i in range(2)] == [a.tolist() for a in arrays]
    # and the same bytes on any machine and any day: data/model's hash in dvc.lock depends on them
    assert sha256_file(tmp_path / "a.npz") == "2d95f55a2bd5a8beadf90cb136a69430fcf01f35101a238b1a566ab319641426"
    with pytest.raises(ValueError, match="allow_pickle"):
        write_npz(tmp_path / "c.npz", [np.array([{"a": 1}], dtype=object)])


def test_leftovers_of_a_killed_write_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "model"
    (tmp_path / ".model.abc.tmp").mkdir()
    (tmp_path / ".model.abc.tmp" / "weights.npz").write_text("half")
    (tmp_path / ".model.def.tmp").write_text("half")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("a user's file")
    (tmp_path / ".model.ghi.tmp").symlink_to(elsewhere)  # a link is removed, never what it points to
    (tmp_path / ".other.abc.tmp").write_text("another output's")
    with atomic_dir(target) as tmp:
        (tmp / "weights.npz").write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.abc.tmp", "elsewhere", "model"]
    assert (elsewhere / "keep").read_text() == "a user's file"


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


def test_a_csv_is_its_header_then_one_line_a_row(tmp_path):
    from imdb_lstm.files import write_csv
    write_csv(tmp_path / "roc.csv", ["fpr", "tpr"], [(0.0, 0.5), (1, 1.0)])
    assert (tmp_path / "roc.csv").read_text() == "fpr,tpr\n0.0,0.5\n1,1.0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["roc.csv"], "written beside itself, then renamed"


def test_removing_a_checkpoint_removes_its_folder_and_minds_no_missing_one(tmp_path):
    from imdb_lstm.checkpoint import remove_checkpoint
    folder = tmp_path / "train"
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "state.json").write_text("{}")
    remove_checkpoint(folder)
    assert not folder.exists()
    remove_checkpoint(folder)
