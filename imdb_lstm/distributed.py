"""One training run across processes: torchrun starts them, each takes its part of every batch, and their
gradients are summed, each weighted by its part's share of the batch, before every optimizer step. So each
step is the one-process step on the whole batch, to rounding (DistributedDataParallel's arithmetic, exact
where the parts differ in size). Every process holds the same weights; process 0 alone scores held-out data
and writes outputs, checkpoints and dvclive's files, and its output is the stage's; the others' go to a log
that a failure is read from.

A stage asks `launch` for the processes when `distributed.processes` > 1 and it is not one of them itself;
each of them calls `join`. torchrun's own settings (PET_NNODES, PET_RDZV_ENDPOINT, PET_RDZV_ID, ...) in the
environment take the run to several machines; without them it stays on this one.
"""
import json
import os
import re
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imdb_lstm import backend
from imdb_lstm.errors import INTERRUPTED, LOST_PROCESS, PipelineError


def wanted(params):
    """Whether params (distributed.processes > 1) or torchrun's settings (several machines) ask for more than
    one process, and this is not one of them already."""
    return (params["distributed"]["processes"] > 1 or _several_machines()) and not launched()


def _several_machines():
    """Whether torchrun's PET_NNODES ("N" or "MIN:MAX") allows more than one machine."""
    return os.environ.get("PET_NNODES", "1").split(":")[-1] != "1"


def launched():
    """Whether torchrun started this process (it names the run in every process it starts)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def launch(module, processes):
    """Run `python -m module` in `processes` processes on this machine (per machine, with torchrun's PET_*
    settings) and wait for them; a PipelineError names the process that failed first and why."""
    import logging

    from torch.distributed import run
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    for name in list(logging.root.manager.loggerDict):  # torchrun's own lines: the failure is said below, once
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="imdb-lstm-processes-") as logs:
        others = ",".join(f"{rank}:3" for rank in range(1, processes))  # 3: stdout and stderr to the log
        argv = ["--nproc-per-node", str(processes), "--max-restarts", "0", "--monitor-interval", "0.2",
                "--log-dir", logs, *(["--redirects", others] if others else []),
                *([] if "PET_NNODES" in os.environ else ["--standalone"]), "-m", module]
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default for several processes, set quietly
        try:
            run.run(run.parse_args(argv))
        except SignalException:  # torchrun has stopped the processes; this one stops as a stage does
            raise KeyboardInterrupt from None
        except ChildFailedError as error:
            # the first to fail, not one that ended because another had (LOST_PROCESS) or that torchrun stopped
            # then (SIGTERM: killed by it, or INTERRUPTED where the stage's handler ran); the failures' timestamps
            # are whole seconds
            failures = sorted(error.failures.items(), key=lambda item: (
                item[1].exitcode in (LOST_PROCESS, INTERRUPTED, -signal.SIGTERM), item[1].timestamp, item[0]))
            rank, failure = failures[0]
            if failure.local_rank == 0 and failure.exitcode not in (LOST_PROCESS, INTERRUPTED) and \
                    failure.exitcode > 0:  # process 0 has printed its error line
                sys.exit(failure.exitcode)
            where = f"process {rank}" + ("" if _several_machines() else f" of {processes}")
            raise PipelineError(_failure(where, failure, Path(logs))) from None


def _failure(where, failure, logs):
    """What went wrong in the process `where` names: its own error line from its log, or how it ended."""
    if failure.exitcode == LOST_PROCESS:  # the one that ended first is on another machine
        return f"{where} lost another process of the run, on another machine (its log there says why): rerun " \
               "to go on from the last checkpoint"
    if failure.exitcode == INTERRUPTED:
        return f"{where} was interrupted; the others were stopped: rerun to go on from the last checkpoint"
    if failure.exitcode < 0:
        name = signal.Signals(-failure.exitcode).name
        return f"{where} was killed ({name}); the others were stopped: rerun to go on from the last checkpoint"
    for log in logs.glob(f"*/attempt_*/{failure.local_rank}/stderr.log"):
        said = [line for line in log.read_text(errors="replace").splitlines() if re.match(r"(error|\w*Error):", line)]
        if said:
            return f"{where}: {said[-1].removeprefix('error: ')}"
    return f"{where} ended with exit status {failure.exitcode}; the others were stopped"


@dataclass
class Group:
    """The processes of one run, as one of them sees them."""

    rank: int
    size: int

    @property
    def main(self):
        """Process 0, the one that writes."""
        return self.rank == 0

    def part(self, rows):
        """This process's rows of a batch's `rows` (a numpy array): the batch cut into `size` runs in order."""
        if len(rows) < self.size:
            raise PipelineError(f"a batch of {len(rows)} rows cannot be shared by {self.size} processes: raise the "
                                "batch size, or lower distributed.processes")
        return np.array_split(rows, self.size)[self.rank]

    def share(self, count):
        """This process's gradients count in the step's sum in proportion to `count`, its part of the step's
        predictions over all processes."""
        total = float(backend.all_sum(np.array([count], dtype=np.float64))[0])
        backend.set_gradient_weight(count / total)

    def sum(self, numbers):
        """`numbers` summed over the processes, in float64."""
        return backend.all_sum(np.asarray(numbers, dtype=np.float64))

    def from_main(self, value):
        """Process 0's `value` (JSON-able) in every process; the others pass None."""
        data = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8) if self.main else np.zeros(0, np.uint8)
        size = int(self.sum([data.size])[0])
        data = np.pad(data, (0, size - data.size)) if not self.main else data
        return json.loads(self.sum(data).astype(np.uint8).tobytes())

    def gather(self, arrays):
        """Each of `arrays` (numpy, the same shapes in every process) stacked over the processes, a row each."""
        return [backend.all_sum(np.stack([array if rank == self.rank else np.zeros_like(array)
                                          for rank in range(self.size)])) for array in arrays]

    def draw_apart(self, seed):
        """Give this process a random generator of its own (dropout draws from it), from `seed` and its rank;
        called once the weights are made, the same in every process."""
        backend.seed(int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0]))

    def checkpoint_from_main(self, saved):
        """Process 0's checkpoint, (state, {name: [arrays]}) or None, in every process; the others pass None."""
        layout = self.from_main(saved and [saved[0], {name: [[array.dtype.str, array.shape] for array in arrays]
                                                      for name, arrays in saved[1].items()}])
        if layout is None:
            return None
        state, kinds = layout
        return state, {name: [backend.all_sum(saved[1][name][i] if self.main else np.zeros(shape, dtype))
                              for i, (dtype, shape) in enumerate(arrays)] for name, arrays in kinds.items()}


def join(comm):
    """This process's Group in a run torchrun started, after joining it over `comm` (gloo or nccl); None
    when torchrun did not start it (one process: nothing to join)."""
    if not launched():
        return None
    rank, size = backend.start_process_group(comm)
    return Group(rank, size)
