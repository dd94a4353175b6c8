"""One error type for everything a user can fix, and the entry point that reports it."""
import contextlib
import errno
import fcntl
import os
import re
import reprlib
import signal
import sys
from pathlib import Path

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 200
_short.maxlevel = 3


class PipelineError(Exception):
    """Bad input or a failed step: the message says what is wrong and how to fix it."""


class LostProcess(Exception):
    """Another process of a run across processes (imdb_lstm/distributed.py) ended: this one ends too, with
    LOST_PROCESS and nothing said; the launcher says which ended and why."""


LOST_PROCESS = 75  # the exit status of a process that LostProcess ended
INTERRUPTED = 130  # the exit status of a stage that a signal stopped (as a shell's for SIGINT)


def quote(value, limit=200, repr_=True):
    """A value from outside, for a message: its repr (or str), at most about `limit` characters, so a
    huge or deeply nested value can neither flood the terminal nor cost memory to print."""
    text = _short.repr(value) if repr_ else str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


# What the OS says when a disk, quota or permission stops a write: the user's to fix, not a bug.
USER_OS_ERRORS = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some disk space",
                  errno.EACCES: "check the permissions", errno.EPERM: "check the permissions",
                  errno.EROFS: "the file system is read-only", errno.EIO: "the disk failed"}
def get_it_by(stage):
    """What to run for a missing output of `stage`: `dvc pull` too where the checkout (the working directory)
    has a DVC remote, where a teammate may have pushed it; else only the stage."""
    configs = [Path(".dvc/config"), Path(".dvc/config.local")]  # `dvc remote add` writes ['remote "NAME"']
    has_remote = any(re.match(r"""\s*\[\s*['"]?remote\s""", line) for config in configs if config.is_file()
                     for line in config.read_text(errors="replace").splitlines())
    return f"`dvc pull`, or `dvc repro {stage}`," if has_remote else f"`dvc repro {stage}`"


LOCK = Path(".stage.lock")  # in the checkout (the working directory), ignored by git


def run_stage(main, lock=True):
    """Run a stage's main(); a PipelineError becomes one clear line and exit status 1.

    With `lock`, one stage runs at a time in a checkout: a second one refuses, naming the first."""
    # SIGTERM (a killed `dvc repro`, a CI timeout) unwinds like Ctrl-C, so temporary files are removed.
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where the shell ignores it
        signal.signal(signal.SIGINT, _interrupt)
    try:
        with _one_stage_at_a_time() if lock else contextlib.nullcontext():
            main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except LostProcess:
        sys.exit(LOST_PROCESS)
    except KeyboardInterrupt:
        print("interrupted: no outputs were written", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except MemoryError:
        print("error: out of memory: close other programs, or lower batch_size or data.seq_len", file=sys.stderr)
        sys.exit(1)
    except OSError as error:
        if error.errno not in USER_OS_ERRORS:
            raise
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror}{where}: {USER_OS_ERRORS[error.errno]} and rerun; no output was "
              "left half-written", file=sys.stderr)
        sys.exit(1)


@contextlib.contextmanager
def _one_stage_at_a_time():
    """Hold an exclusive lock on LOCK while the stage runs; the OS drops it when the process ends,
    however it ends, so a killed stage never blocks the next one."""
    with open(LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            other = quote(f.read(300).strip(), repr_=False) or "another process"
            raise PipelineError(f"another stage of this checkout is running ({other}): wait for it to "
                                "finish, or stop it; two runs in one checkout would write over each other") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}: {' '.join(sys.argv) if sys.argv[0] != '-c' else 'python -c ...'}")
        f.flush()
        yield


_interrupted = False


def _interrupt(signum, frame):
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def check_interrupted():
    """Raise KeyboardInterrupt again if a stop signal came: the one the handler raised is lost when it
    lands in code that catches everything (tlx and its helpers have bare excepts), and then work must
    neither go on nor publish an output."""
    if _interrupted:
        raise KeyboardInterrupt
