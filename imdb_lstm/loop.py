"""The one training loop of `train` and `lm`: epochs of seeded batches, held-out scores after each, early
stopping, a moving average of the weights, progress, dvclive, and checkpoints to resume from.

What differs between the two stages is their Task (model.ClassifierTask, language_model.LanguageModelTask):
the batches, what a step takes, the step itself and the held-out scores. After each epoch, and every
`task.checkpoint_steps` steps within one, `fit` saves a checkpoint (imdb_lstm/checkpoint.py): the weights,
the optimizer, the backend's dropout generator and a State. A stopped run resumes from it and ends as an
uninterrupted run would, bit for bit. In a run across processes (imdb_lstm/distributed.py) each takes its
part of every batch; process 0 alone scores held-out data, saves and publishes.
"""
import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from imdb_lstm import backend
from imdb_lstm.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint
from imdb_lstm.errors import PipelineError, check_interrupted
from imdb_lstm.progress import bar, log_line
from imdb_lstm.training import WeightAverage


@dataclass
class Record:
    """One epoch's figures: the training loss and accuracy (rounded), and the task's held-out scores."""

    epoch: int
    loss: float
    accuracy: float
    held_out: dict = field(default_factory=dict)

    def figures(self):
        return {"loss": self.loss, "accuracy": self.accuracy, **self.held_out}


@dataclass
class Totals:
    """The epoch so far: its loss summed over the predictions made, how many were correct, how many made."""

    loss: float = 0.0
    correct: int = 0
    count: int = 0


@dataclass
class State:
    """What decides the rest of a run, beside the weights and the optimizer: each checkpoint holds one."""

    epoch: int = 1  # the epoch under way
    done: int = 0  # its steps taken
    order: dict | None = None  # the batch-order generator's state at the start of `epoch`
    totals: Totals = field(default_factory=Totals)
    log: list = field(default_factory=list)  # a Record per finished epoch
    best: Record | None = None  # early stopping's best epoch so far
    average_total: float | None = None  # the weight average's sum of factors

    def to_json(self):
        """JSON values; each record's scores as [name, value] pairs, in their order (JSON objects are written
        with sorted keys, and dvclive logs the scores in this order)."""
        record = lambda r: r and {**dataclasses.asdict(r), "held_out": list(r.held_out.items())}  # noqa: E731
        return {**dataclasses.asdict(self), "log": [record(r) for r in self.log], "best": record(self.best)}

    @classmethod
    def from_json(cls, saved):
        record = lambda r: r and Record(**{**r, "held_out": dict(r["held_out"])})  # noqa: E731
        return cls(**{**saved, "totals": Totals(**saved["totals"]), "log": [record(r) for r in saved["log"]],
                      "best": record(saved["best"])})


@dataclass
class Result:
    """What `fit` hands to `publish`: the log, early stopping's best epoch (None without it) and whether it
    stopped the run, and the seconds it took. The net then holds the weights to keep."""

    log: list
    best: Record | None
    stopped: bool
    seconds: float

    @property
    def kept(self):
        """The record of the epoch whose weights are kept."""
        return self.best or self.log[-1]


class Task(Protocol):
    """What `fit` trains: model.ClassifierTask and language_model.LanguageModelTask are the two."""

    net: object
    loss_fn: object  # a training.CountingLoss that the steps call
    epochs: int
    seed: int  # of the batch order
    name: str  # starts the lines `fit` prints
    unit: str  # what the progress bar counts: `size` for each batch
    loss_name: str  # for the error when the loss is no number, with the setting to lower:
    lr_setting: str
    checkpoint_steps: int | None  # a checkpoint every so many steps within an epoch too, if set
    keep_last_checkpoint: bool  # a finished run keeps its last epoch's, for a longer run to go on from
    monitor: str | None  # the held-out score early stopping watches (lower is better), if any
    patience: int  # epochs without a better `monitor` before it stops
    uses_dropout: bool  # then a checkpoint needs the backend's dropout generator

    def batches(self, rng):
        """One epoch's batches, index arrays drawn from `rng`."""

    def size(self, batch): ...

    def inputs(self, epoch, batches, start, part):
        """For each of `batches` from `start` on: (the step's tensors, how many predictions they make), the
        tensors of part(rows) for each array of rows the batch has (this process's part)."""

    def new_phase(self, epoch):
        """Whether `epoch` trains with a step of its own (a new optimizer), as the first one does."""

    def make_step(self, epoch): ...

    def schedule(self, epoch, index, count):
        """None: each step moves the weights at the rate make_step gave it; else a function of a weight, its
        rate in step `index` of the `count` of `epoch`."""

    def held_out(self):
        """The net's scores on held-out data as it is now, rounded ({} without any)."""

    def describe(self, epoch): ...

    def describe_scores(self, scores): ...


def fit(task, folder, made_for, publish, average_decay=0.0, live=None, group=None):
    """Train task.net for task.epochs, going on from the checkpoint in `folder` if it was made for
    `made_for`; then `publish(result)` writes the outputs, and the checkpoint goes unless a longer run could
    use it. With `average_decay` a WeightAverage of the weights is validated and kept; with `live` (dvclive)
    each epoch's figures are logged, a resumed run's earlier ones first. With `group` (a distributed.Group)
    this is one of its processes; only process 0 saves, publishes and logs to `live`."""
    tlx, net, start = backend.tlx(), task.net, time.perf_counter()
    main = group is None or group.main
    if group:  # each process's dropout generator is in the checkpoint: it is for this many processes only
        made_for = f"{made_for} in {group.size} processes"
        group.draw_apart(task.seed)
    if task.uses_dropout and backend.rng_state() is None:
        log_line(f"no checkpoints: {backend.name()} cannot save dropout's random generator, so a stopped run "
                 "starts again from epoch 1")
        folder = None
    state, arrays = _resume(task, net, folder, made_for, group)
    save_in = folder if main else None
    average = WeightAverage(tlx, net, average_decay, *([state.average_total, arrays["average"]] if arrays else [])) \
        if average_decay else None
    best_weights = arrays["best_weights"] if arrays and state.best else None
    rng, step, stopped, first = np.random.default_rng(), None, False, state.epoch
    for record in state.log:  # a resumed run's dvclive files come out as an uninterrupted run's
        _log_epoch(live, record)
    net.set_train()
    for epoch in range(state.epoch, task.epochs + 1):
        if step is None or task.new_phase(epoch):
            step = task.make_step(epoch)
            if arrays and epoch == first:
                backend.restore_optimizer(step, dict(zip(arrays["optimizer_names"], arrays["optimizer"])))
        rng.bit_generator.state = state.order
        batches, desc, epoch_start = task.batches(rng), task.describe(epoch), time.perf_counter()
        with bar(total=sum(map(task.size, batches)), initial=sum(map(task.size, batches[:state.done])), desc=desc,
                 unit=task.unit) as progress:
            _take_steps(task, step, batches, state, average, progress,
                        lambda: _save(save_in, made_for, state, net, step, best_weights, average, group), group)
        totals = state.totals
        record = Record(epoch, round(totals.loss / totals.count, 6), round(totals.correct / totals.count, 6))
        net.set_eval()
        own = main and average and task.held_out()  # the weights as trained, beside their average's: printed only
        with average.in_place() if average else contextlib.nullcontext():
            record.held_out, monitor = task.held_out() if main else None, task.monitor
            if group:
                record.held_out = group.from_main(record.held_out)
            if monitor and (state.best is None or record.held_out[monitor] < state.best.held_out[monitor]):
                state.best, best_weights = record, [tlx.convert_to_numpy(w).copy() for w in net.all_weights]
        net.set_train()
        state.log.append(record)
        stopped = state.best is not None and epoch - state.best.epoch >= task.patience
        state.epoch, state.done, state.order, state.totals = epoch + 1, 0, rng.bit_generator.state, Totals()
        if not stopped and (epoch < task.epochs or task.keep_last_checkpoint):
            # a new phase's step starts with a fresh optimizer: no state to keep for it
            _save(save_in, made_for, state, net, None if task.new_phase(epoch + 1) else step, best_weights, average,
                  group)
        _log_epoch(live, record)
        log_line(f"{desc}: loss {record.loss:.4f}, accuracy {record.accuracy:.4f}"
                 + task.describe_scores(record.held_out)
                 + (f" (the weights as trained: {own[monitor]:.4f})" if own and monitor else "")
                 + f" in {time.perf_counter() - epoch_start:.0f} s")
        if stopped:
            break
    if best_weights is not None:
        tlx.files.assign_weights(best_weights, net)
    elif average:
        tlx.files.assign_weights(average.values, net)
    if not main:
        return
    publish(Result(state.log, state.best, stopped, time.perf_counter() - start))
    if folder and (stopped or not task.keep_last_checkpoint):  # a longer run would stop here too
        remove_checkpoint(folder)


def _take_steps(task, step, batches, state, average, progress, save, group):
    """The epoch's steps from state.done on, each added to state.totals (over all processes, with `group`);
    `save` keeps a checkpoint every task.checkpoint_steps steps."""
    totals = state.totals
    for tensors, predictions in task.inputs(state.epoch, batches, state.done, group.part if group else _whole):
        check_interrupted()
        task.loss_fn.correct = 0
        rate_of = task.schedule(state.epoch, state.done, len(batches))
        if rate_of:
            backend.set_rates(step, rate_of)
        if group:
            group.share(predictions)
        step(*tensors)
        if average:
            average.update()
        loss, correct = task.loss_fn.last_loss, task.loss_fn.correct
        if group:  # the batch's mean loss and its count of correct predictions, over all processes
            loss_sum, correct, predictions = group.sum([loss * predictions, correct, predictions])
            loss, correct, predictions = float(loss_sum / predictions), int(correct), int(predictions)
        if not math.isfinite(loss):
            raise PipelineError(f"the {task.loss_name} became {loss}: lower {task.lr_setting} in params.yaml")
        totals.loss, totals.correct = totals.loss + loss * predictions, totals.correct + correct
        totals.count += predictions
        progress.update(task.size(batches[state.done]))
        progress.set_postfix(loss=f"{totals.loss / totals.count:.4f}")
        state.done += 1
        if task.checkpoint_steps and state.done % task.checkpoint_steps == 0 and state.done < len(batches):
            save()
            log_line(f"{task.describe(state.epoch)}: {state.done}/{len(batches)} steps, "
                     f"loss {totals.loss / totals.count:.4f}")
    progress.set_postfix(loss=f"{totals.loss / totals.count:.4f}", accuracy=f"{totals.correct / totals.count:.4f}")


def _whole(rows):
    """One process's part of a batch's rows: all of them."""
    return rows


def _resume(task, net, folder, made_for, group):
    """(the State to go on from, the checkpoint's arrays or None): a fresh start without a checkpoint made
    for `made_for`, or with one of a run as long as this one or longer (so `dvc repro --force` trains again).
    With `group`, process 0's checkpoint in every process: the others' machines may hold none."""
    fresh = State(order=np.random.default_rng(task.seed).bit_generator.state), None
    saved = load_checkpoint(made_for, folder) if folder and (group is None or group.main) else None
    if group:
        saved = group.checkpoint_from_main(saved)
    if not saved or saved[0]["epoch"] > task.epochs:
        return fresh
    state, arrays = State.from_json({k: v for k, v in saved[0].items() if k not in ("fingerprint", "optimizer")}), \
        {**saved[1], "optimizer_names": saved[0]["optimizer"]}
    backend.tlx().files.assign_weights(arrays["weights"], net)
    backend.set_rng_state([rows[group.rank] for rows in arrays["rng"]] if group else arrays["rng"])
    where = f"epoch {state.epoch} after {state.done} of its steps" if state.done else f"after epoch {state.epoch - 1}"
    log_line(f"{task.name}: resuming {where}, from the checkpoint in {folder}")
    return state, arrays


def _save(folder, made_for, state, net, step, best_weights, average, group):
    """The checkpoint of `state`; the optimizer's too unless `step` is None. With `group` every process calls
    it (it gathers their dropout generators, a row each) and process 0 writes it."""
    rng = backend.rng_state() or []
    if group:
        rng = group.gather(rng)
    if folder is None:
        return
    tlx = backend.tlx()
    state.average_total = average.total if average else None
    optimizer = backend.optimizer_state(step) if step else {}
    save_checkpoint({"fingerprint": made_for, **state.to_json(), "optimizer": list(optimizer)},
                    {"weights": [tlx.convert_to_numpy(w) for w in net.all_weights],
                     "optimizer": list(optimizer.values()), "rng": rng,
                     "best_weights": best_weights or [], "average": average.values if average else []}, folder)


def _log_epoch(live, record):
    """One epoch's figures to dvclive: metrics/epochs/metrics.json says the latest and the step (what
    `dvc exp show` shows of a running experiment), plots/metrics/*.tsv each epoch's (`dvc plots show`)."""
    if live is None:
        return
    live.step = record.epoch
    for name, value in record.figures().items():
        live.log_metric(name, value)
    live.next_step()
