"""Progress fit for a terminal and for a log: bars on a terminal; in a log (dvc queue, CI, `> log`)
no bar redraws, only the few lines a stage prints itself (`log_line`). TQDM_DISABLE=1 turns bars off."""
import os
import sys

from tqdm import tqdm


def bars_on():
    return not os.environ.get("TQDM_DISABLE") and sys.stderr.isatty()


def bar(**kwargs):
    """A tqdm bar on a terminal; elsewhere one that draws nothing (its redraws made 259 KB of a
    default `dvc repro` log)."""
    return tqdm(disable=not bars_on(), **kwargs)


def log_line(text):
    """A line for logs, where no bar shows progress; on a terminal the bar already says it."""
    if not bars_on():
        print(text, file=sys.stderr, flush=True)
