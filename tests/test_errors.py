"""Errors a user can fix: values from outside quoted and cut short; how run_stage ends a stage."""
import errno
import os
import signal
import sys

import pytest

from imdb_lstm import errors
from imdb_lstm.errors import PipelineError, quote


def test_quote_keeps_short_values_whole_and_cuts_long_ones_with_their_size():
    assert quote("x" * 10) == repr("x" * 10)
    assert quote("x" * 198) == repr("x" * 198)  # 200 characters with its quotes: kept whole
    assert quote("x" * 200, repr_=False) == "x" * 200
    assert quote("x" * 201, repr_=False) == "x" * 200 + "... (201 characters)"
    assert quote(list(range(10_000))).endswith("...]")  # reprlib shortens containers before we cut


# --- run_stage, in-process: each way a stage can end --------------------------------------------

@pytest.fixture
def stage_dir(tmp_path, monkeypatch):
    """A checkout to run stages in, and the signal handlers as they were afterwards."""
    monkeypatch.chdir(tmp_path)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # as in a terminal: a test run started in the background (`cmd &` in a script) inherits Ctrl-C
    # ignored, which run_stage rightly keeps (test_where_the_shell_ignores_ctrl_c_the_stage_does_too)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield tmp_path
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    errors._interrupted = False  # a caught stop signal leaves the flag set


def ends_with(main, capsys, lock=True):
    with pytest.raises(SystemExit) as ended:
        errors.run_stage(main, lock=lock)
    return ended.value.code, capsys.readouterr().err


def raising(error):
    def main():
        raise error
    return main


def test_a_pipeline_error_is_one_line_and_exit_1(stage_dir, capsys):
    assert ends_with(raising(PipelineError("bad thing: fix it")), capsys) == (1, "error: bad thing: fix it\n")


def test_an_interrupt_exits_130_and_says_nothing_was_written(stage_dir, capsys):
    assert ends_with(raising(KeyboardInterrupt()), capsys) == (130, "interrupted: no outputs were written\n")


def test_running_out_of_memory_says_what_to_lower(stage_dir, capsys):
    assert ends_with(raising(MemoryError()), capsys) == (
        1, "error: out of memory: close other programs, or lower batch_size or data.seq_len\n")


@pytest.mark.parametrize("number, advice", [(errno.ENOSPC, "free some disk space"),
                                            (errno.EACCES, "check the permissions"),
                                            (errno.EROFS, "the file system is read-only"),
                                            (errno.EIO, "the disk failed")])
def test_a_full_disk_or_a_permission_is_named_with_its_file(stage_dir, capsys, number, advice):
    error = OSError(number, os.strerror(number), "data/model")
    assert ends_with(raising(error), capsys) == (
        1, f"error: {os.strerror(number)} (data/model): {advice} and rerun; no output was left half-written\n")
    code, message = ends_with(raising(OSError(number, os.strerror(number))), capsys)
    assert message.startswith(f"error: {os.strerror(number)}: {advice}")


def test_any_other_os_error_is_a_bug_and_keeps_its_traceback(stage_dir):
    with pytest.raises(ConnectionResetError):
        errors.run_stage(raising(ConnectionResetError(errno.ECONNRESET, "reset")))


def test_a_finished_stage_returns_and_leaves_its_lock_file_naming_it(stage_dir):
    assert errors.run_stage(lambda: None) is None
    assert errors.LOCK.read_text().startswith(f"pid {os.getpid()}: ")


def test_a_second_stage_in_one_checkout_is_refused_naming_the_first(stage_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/repo/stages/train.py"])

    readers = []

    def second_stage():
        errors.run_stage(lambda: readers.append("ran"), lock=False)  # as predict, which only reads: it runs
        errors.run_stage(lambda: pytest.fail("the second stage ran"))

    code, message = ends_with(second_stage, capsys)
    assert code == 1 and readers == ["ran"]
    assert message == (f"error: another stage of this checkout is running (pid {os.getpid()}: /repo/stages/train.py): "
                       "wait for it to finish, or stop it; two runs in one checkout would write over each other\n")
    assert errors.run_stage(lambda: None, lock=False) is None  # without the lock nothing waits


def test_a_stop_signal_becomes_an_interrupt_that_a_bare_except_cannot_hide(stage_dir, capsys):
    def main():
        errors.check_interrupted()  # nothing came yet
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except BaseException:  # tlx's bare excepts swallow the KeyboardInterrupt the handler raises
            pass
        errors.check_interrupted()
        pytest.fail("work went on after the signal")

    assert ends_with(main, capsys) == (130, "interrupted: no outputs were written\n")
    assert signal.getsignal(signal.SIGINT) is errors._interrupt


def test_where_the_shell_ignores_ctrl_c_the_stage_does_too(stage_dir):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    errors.run_stage(lambda: None)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_a_missing_output_suggests_dvc_pull_only_where_a_remote_is_configured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert errors.get_it_by("train") == "`dvc repro train`", "no .dvc/config: nowhere to pull from"
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc/config").write_text("[core]\n    remote = team\n")
    assert errors.get_it_by("train") == "`dvc repro train`", "a default remote's name, but no remote"
    (tmp_path / ".dvc/config").write_bytes(b"# \xff not UTF-8\n[core]\n    remote = team\n")
    assert errors.get_it_by("train") == "`dvc repro train`"
    # `dvc remote add` writes the first; `--local`, the second; by hand, a section without quotes
    for config, section in (("config", "['remote \"team\"']"), ("config.local", "['remote \"team\"']"),
                            ("config", '  [remote "team"]')):
        (tmp_path / ".dvc/config").write_text("[core]\n")
        (tmp_path / ".dvc" / config).write_text(f"{section}\n    url = /mnt/shared\n")
        assert errors.get_it_by("train") == "`dvc pull`, or `dvc repro train`,"
        (tmp_path / ".dvc" / config).unlink()
