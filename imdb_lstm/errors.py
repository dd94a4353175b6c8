"""One error type for everything a user can fix, and the entry point that reports it."""
import signal
import sys


class PipelineError(Exception):
    """Bad input or a failed step: the message says what is wrong and how to fix it."""


def run_stage(main):
    """Run a stage's main(); a PipelineError becomes one clear line and exit status 1."""
    # SIGTERM (a killed `dvc repro`, a CI timeout) unwinds like Ctrl-C, so temporary files are removed.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: no outputs were written", file=sys.stderr)
        sys.exit(130)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
