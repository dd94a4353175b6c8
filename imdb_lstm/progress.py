"""Progress fit for a terminal and for a log: bars on a terminal; in a log (dvc queue, CI, `> log`)
no bar redraws, only the lines a stage prints itself (`log_line`) and, for work that runs long, a
line every minute (TQDM_MININTERVAL seconds, if set) saying how far it is. TQDM_DISABLE=1 turns both off."""
import os
import sys
import time

from tqdm import tqdm

LOG_EVERY_S = 60.0


def bars_on():
    return not os.environ.get("TQDM_DISABLE") and sys.stderr.isatty()


def bar(**kwargs):
    """A tqdm bar on a terminal; in a log a LogLines (a bar's redraws made 259 KB of a default
    `dvc repro` log); with TQDM_DISABLE a tqdm that draws nothing."""
    if bars_on() or os.environ.get("TQDM_DISABLE"):
        return tqdm(disable=not bars_on(), **kwargs)
    return LogLines(**kwargs)


class LogLines:
    """What a bar says, as one line every TQDM_MININTERVAL seconds (60 by default) while the work runs:
    a 10-minute epoch in `dvc exp run > log` shows how far it is, and short work prints nothing."""

    def __init__(self, iterable=None, total=None, initial=0, desc="", unit="it", unit_scale=False, **_):
        self.iterable, self.total, self.n, self.initial = iterable, total, initial, initial
        self.desc, self.unit, self.unit_scale, self.postfix = desc, unit, unit_scale, None
        self.every = float(os.environ.get("TQDM_MININTERVAL", LOG_EVERY_S))
        self.start = self.last = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            form = ("{desc}: {percentage:.0f}% {n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining}" if self.total
                    else "{desc}: {n_fmt}{unit} [{elapsed}")
            print(tqdm.format_meter(self.n, self.total, now - self.start, prefix=self.desc, unit=self.unit,
                                    unit_scale=self.unit_scale, postfix=self.postfix, initial=self.initial,
                                    bar_format=form + ", {rate_fmt}{postfix}]"),
                  file=sys.stderr, flush=True)

    def set_postfix(self, **values):
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())


def log_line(text):
    """A line for logs, where no bar shows progress; on a terminal the bar already says it."""
    if not bars_on():
        print(text, file=sys.stderr, flush=True)
