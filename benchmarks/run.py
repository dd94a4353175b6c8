"""Benchmarks: tlx against the bare backend, and the pipeline's own costs. Prints a markdown table.

    python benchmarks/run.py --write BENCHMARKS.md  # everything on the CPU
    python benchmarks/run.py --only epoch lm --device gpu --batch-sizes 64 256   # the GPU measures
    python benchmarks/run.py --only processes      # train in 1 process against 2 (distributed.processes)
    python benchmarks/run.py --quick               # every measure on tiny inputs (the tests run it)

Timings are medians of --repeats runs; each tlx/plain ratio is the median of ratios measured in
the same process, alternating the two, because a shared machine is noisy. Training epochs use
random word ids of the real shape (25,000 × 200): an LSTM's cost does not depend on the words.
Stage and end-to-end measures run in a fresh clone of HEAD, data from the download cache
($IMDB_CACHE_DIR); `--params` swaps in another params.yaml there (the tests run `--quick` on a tiny
archive that way).
"""
import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import yaml

from imdb_lstm import backends

ROOT = Path(__file__).resolve().parents[1]
REVIEWS, SEQ_LEN, VOCAB, WIDTH = 25_000, 200, 20_002, 64


# --- one training epoch: tlx (the pipeline's own loop) against the bare backend ---------------

def tlx_epoch(tlx, ids, labels, batch_size):
    """The train stage's own loop (imdb_lstm/loop.py's fit with train's task): SentimentLSTM, its Adam step,
    seeded batches; each call one epoch."""
    from imdb_lstm.loop import fit
    from imdb_lstm.model import ClassifierTask, SentimentLSTM

    task = ClassifierTask(SentimentLSTM(VOCAB, WIDTH, WIDTH), ids, labels, epochs=1, batch_size=batch_size, lr=1e-3,
                          seed=0)
    return lambda: fit(task, None, "", lambda result: None)


def torch_epoch(ids, labels, batch_size, device):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(VOCAB, WIDTH)
            self.lstm = torch.nn.LSTM(WIDTH, WIDTH, batch_first=True)
            self.dense, self.classify = torch.nn.Linear(WIDTH, WIDTH), torch.nn.Linear(WIDTH, 2)

        def forward(self, x):
            states, _ = self.lstm(self.embedding(x))
            return self.classify(torch.relu(self.dense(states.mean(1))))

    net = Net().to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def run():
        order, correct = np.random.default_rng(0).permutation(len(ids)), 0
        for start in range(0, len(ids), batch_size):
            batch = order[start:start + batch_size]
            x, y = torch.tensor(ids[batch], device=device), torch.tensor(labels[batch], device=device)
            logits = net(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == y).sum())  # the pipeline counts accuracy too
            float(loss)
    return run


def paddle_epoch(ids, labels, batch_size):
    import paddle

    class Net(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.embedding = paddle.nn.Embedding(VOCAB, WIDTH)
            self.lstm = paddle.nn.LSTM(WIDTH, WIDTH)
            self.dense, self.classify = paddle.nn.Linear(WIDTH, WIDTH), paddle.nn.Linear(WIDTH, 2)

        def forward(self, x):
            states, _ = self.lstm(self.embedding(x))
            return self.classify(paddle.nn.functional.relu(self.dense(states.mean(1))))

    net = Net()
    optimizer = paddle.optimizer.Adam(learning_rate=1e-3, parameters=net.parameters())

    def run():
        order, correct = np.random.default_rng(0).permutation(len(ids)), 0
        for start in range(0, len(ids), batch_size):
            batch = order[start:start + batch_size]
            x, y = paddle.to_tensor(ids[batch]), paddle.to_tensor(labels[batch])
            logits = net(x)
            loss = paddle.nn.functional.cross_entropy(logits, y)
            optimizer.clear_grad()
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == y).sum())
            float(loss)
    return run


def tensorflow_epoch(ids, labels, batch_size):
    """A plain Keras 3 model in TF's usual custom loop: the step compiled with tf.function (eager, the
    same loop took 518 ms a step against 75 compiled)."""
    import keras
    import tensorflow as tf

    words = keras.Input((None,), dtype="int64")
    states = keras.layers.LSTM(WIDTH, return_sequences=True)(keras.layers.Embedding(VOCAB, WIDTH)(words))
    hidden = keras.layers.Dense(WIDTH, activation="relu")(keras.ops.mean(states, axis=1))
    net = keras.Model(words, keras.layers.Dense(2)(hidden))
    optimizer = keras.optimizers.Adam(1e-3)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = net(x, training=True)
            loss = cross_entropy(y, logits)
        optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
        return loss, tf.argmax(logits, axis=1)

    def run():
        order, correct = np.random.default_rng(0).permutation(len(ids)), 0
        for start in range(0, len(ids), batch_size):
            batch = order[start:start + batch_size]
            loss, predicted = step(tf.constant(ids[batch]), tf.constant(labels[batch]))
            correct += int((predicted.numpy() == labels[batch]).sum())
            float(loss)
    return run


def mindspore_epoch(ids, labels, batch_size):
    """Plain MindSpore in PyNative mode, as its tutorials train: nn.LSTM and nn.Adam in
    nn.TrainOneStepCell (the backend module has already set what every MindSpore process here needs)."""
    import mindspore as ms
    from mindspore import nn

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(VOCAB, WIDTH)
            self.lstm = nn.LSTM(WIDTH, WIDTH, batch_first=True)
            self.dense = nn.Dense(WIDTH, WIDTH, activation="relu")
            self.classify = nn.Dense(WIDTH, 2)

        def construct(self, x):
            return self.classify(self.dense(self.lstm(self.embedding(x))[0].mean(1)))

    net = Net()
    with_loss = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    step = nn.TrainOneStepCell(with_loss, nn.Adam(net.trainable_params(), learning_rate=1e-3))
    step.set_train()

    def run():
        order = np.random.default_rng(0).permutation(len(ids))
        for start in range(0, len(ids), batch_size):
            batch = order[start:start + batch_size]
            float(step(ms.Tensor(ids[batch].astype(np.int32)), ms.Tensor(labels[batch].astype(np.int32))).asnumpy())
    return run


# torch's takes a device too
PLAIN = {"paddle": paddle_epoch, "tensorflow": tensorflow_epoch, "mindspore": mindspore_epoch}


def kernels_measure(backend_name, batch_size, reviews, reproducible):
    """In this process: seconds for one tlx epoch on the CPU, kernels pinned or not (imdb_lstm/kernels.py)."""
    from imdb_lstm import backend

    tlx = backend.load(backend_name, "cpu", reproducible)
    backend.seed(0)
    rng = np.random.default_rng(0)
    ids, labels = rng.integers(2, VOCAB, (reviews, SEQ_LEN)), rng.integers(0, 2, reviews)
    tlx_epoch(tlx, ids[:batch_size * 10], labels[:batch_size * 10], batch_size)()  # warm-up
    return timed(tlx_epoch(tlx, ids, labels, batch_size), lambda: None)


def in_subprocess(call):
    """Run `benchmarks.run.<call>` in a fresh python (tlx picks its backend, and the math libraries
    their kernels, once per process) and return what it printed."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", f"import benchmarks.run as b; print(b.{call})"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    if done.returncode:
        sys.exit(f"{call} failed:\n{done.stderr}")
    return done.stdout.split("\n")[-2]


def timed(run, sync):
    start = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - start


def no_sync():
    """Nothing to wait for: on the CPU each op has finished when it returns."""


def epoch_measure(backend_name, device, batch_size, repeats, reviews=REVIEWS, reproducible=True):
    """In this process: (median s/epoch tlx, median s/epoch plain, median ratio)."""
    from imdb_lstm import backend

    tlx = backend.load(backend_name, device, reproducible)
    backend.seed(0)
    rng = np.random.default_rng(0)
    ids = rng.integers(2, VOCAB, (reviews, SEQ_LEN))
    labels = rng.integers(0, 2, reviews)
    sync = no_sync
    if backend_name == "torch":
        import torch

        torch_device = "cuda" if backend.device() == "gpu" else "cpu"
        plain = torch_epoch(ids, labels, batch_size, torch_device)
        if torch_device == "cuda":
            sync = torch.cuda.synchronize
    else:
        plain = PLAIN[backend_name](ids, labels, batch_size)
    ours = tlx_epoch(tlx, ids, labels, batch_size)
    ours(), plain()  # warm-up: allocator, kernels, caches
    pairs = [(timed(ours, sync), timed(plain, sync)) for _ in range(repeats)]
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(a / b for a, b in pairs))


# --- one step of the GPU recipe's language model (benchmarks/gpu_recipe.py) ---------------------

LM_SIZES = {"vocabulary": 30_002, "embedding": 400, "hidden": 1152, "batch": 128, "window": 70}  # the recipe's
LM_WORDS = 17_200_000  # an LM epoch: the words of the 75,000 training and unlabelled reviews (the lm stage's count)


def lm_step_measure(backend_name, device, steps, sizes=None):
    """In this process: the median seconds of one step of the recipe's language model (a softmax over every
    word tied to the embedding, the state carried, dropout 0.1, bfloat16 products on a GPU), the lm stage's
    own step, on random words (its cost does not depend on them)."""
    from imdb_lstm import backend

    backend.load(backend_name, device)
    import imdb_lstm.language_model as language_model
    from imdb_lstm.training import CountingLoss, make_step

    size = {**LM_SIZES, **(sizes or {})}
    backend.seed(0)
    net = language_model.LanguageModel(size["vocabulary"], size["embedding"], size["hidden"], 1, size["vocabulary"],
                                       "tied", 0.1, carry_state=True, mixed_precision=backend.device() == "gpu")
    tlx = backend.tlx()
    step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), 1e-3)
    rng = np.random.default_rng(0)
    sync = no_sync
    if backend.device() == "gpu":
        import torch
        sync = torch.cuda.synchronize

    def one_step():
        rows, words = (rng.integers(2, size["vocabulary"], (size["batch"], size["window"])) for _ in range(2))
        step(tlx.convert_to_tensor(rows), tlx.convert_to_tensor(words.ravel()))

    one_step()  # warm-up
    return statistics.median(timed(one_step, sync) for _ in range(steps))


# --- pipeline stages, in a scratch copy of the project ----------------------------------------

def run_timed(command, cwd):
    """(wall seconds, peak resident MB) of a command, via GNU time."""
    with tempfile.NamedTemporaryFile("r") as timing:
        subprocess.run(["/usr/bin/time", "-o", timing.name, "-f", "%e %M", *command], cwd=cwd, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds, kb = timing.read().split()[-2:]
    return float(seconds), int(kb) / 1024


def scratch_project(folder, project, inputs, params=None):
    """`project`'s code and params (with the sections of `params` updated) in `folder`, with the given data/
    folders of `project` linked."""
    for name in ("stages", "imdb_lstm", "params.yaml"):
        (shutil.copytree if (project / name).is_dir() else shutil.copy)(project / name, folder / name)
    if params:
        values = yaml.safe_load((folder / "params.yaml").read_text())
        for key, value in params.items():
            values[key] = {**values[key], **value} if isinstance(value, dict) else value
        (folder / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    for name in inputs:
        (folder / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "data" / name).symlink_to(project / "data" / name)
    (folder / "metrics").mkdir()


def stage_measure(stage, project, inputs, repeats, params=None):
    """(median wall s, peak MB) of one stage's own process in scratch copies of `project` (with `params`)."""
    results = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            scratch_project(Path(tmp), project, inputs, params)
            results.append(run_timed([sys.executable, "-m", f"stages.{stage}"], tmp))
    return statistics.median(s for s, _ in results), max(mb for _, mb in results)


def processes_measure(project, repeats):
    """{processes: median wall s} of one epoch of `train` in 1 and in 2 processes, alternated (a shared
    machine drifts), each a stage process from the start (the backend's import, torchrun's start) to its end."""
    seconds = {1: [], 2: []}
    for _ in range(repeats):
        for processes in seconds:
            seconds[processes].append(stage_measure("train", project, ["prepared", "pretrained", "lm"], 1,
                                                    {"epochs": 1, "distributed": {"processes": processes}})[0])
    return {processes: statistics.median(values) for processes, values in seconds.items()}


def repro_clocked(clone):
    """(wall s, {stage: wall s}) of a plain `dvc repro` in `clone`; a stage's time runs from DVC's
    "Running stage" line for it to the next one's (the last one's to the end), read as the lines come."""
    marks, start = [], time.perf_counter()
    with subprocess.Popen(["dvc", "repro"], cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as process:
        for line in process.stdout:
            if match := re.match(r"Running stage '([^']+)'", line):
                marks.append((match[1], time.perf_counter()))
    end = time.perf_counter()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, "dvc repro")
    return end - start, {name: until - since for (name, since), until in zip(marks, [t for _, t in marks[1:]] + [end])}


def repro_end_to_end(clone, repeats):
    """In `clone`, data from the download cache: a plain `dvc repro` (what a fresh clone costs: its wall
    s and its `train`'s), then `dvc repro --force -s STAGE` stage by stage (wall s and peak MB each), then
    the median of `dvc repro` with nothing to do."""
    plain = repro_clocked(clone)
    # --force: the clone's committed metrics match a fresh run, so DVC would skip evaluate.
    stages = {stage: run_timed(["dvc", "repro", "--force", "-s", stage], clone)
              for stage in yaml.safe_load((clone / "dvc.yaml").read_text())["stages"]}
    noop = statistics.median(run_timed(["dvc", "repro"], clone)[0] for _ in range(repeats))
    return plain, stages, noop


def fresh_clone(folder, params):
    """A clone of HEAD in `folder`, with `params` (a params.yaml) in place of the committed one if given."""
    clone = folder / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    if params:
        shutil.copy(params, clone / "params.yaml")
    return clone


# --- report -------------------------------------------------------------------------------------

def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python {platform.python_version()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=["epoch", "kernels", "lm", "stages", "e2e", "processes"],
                        default=["epoch", "kernels", "lm", "stages", "e2e", "processes"])
    parser.add_argument("--quick", action="store_true",
                        help="every measure once, epochs on 256 reviews, kernels on the first backend only: "
                             "checks that they all run")
    parser.add_argument("--params", type=Path,
                        help="a params.yaml for the stage and end-to-end measures (e.g. a tiny archive's)")
    parser.add_argument("--backends", nargs="*", default=backends.installed(), choices=backends.NAMES,
                        help="default: every installed one")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--batch-sizes", nargs="*", type=int, default=[64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reviews", type=int, default=REVIEWS, help="reviews per training epoch")
    parser.add_argument("--write", type=Path, help="also write the report to this markdown file")
    args = parser.parse_args()
    if args.quick:
        args.reviews, args.repeats = 256, 1

    rows = []

    def add(measure, result):
        rows.append((measure, result))
        print(f"{measure}: {result}", file=sys.stderr, flush=True)  # progress, and nothing lost on a crash

    if "epoch" in args.only:
        for backend_name in args.backends:
            for batch_size in args.batch_sizes:
                result = in_subprocess(f"epoch_measure({backend_name!r}, {args.device!r}, {batch_size}, "
                                       f"{args.repeats}, {args.reviews})")
                ours, plain, ratio = map(float, result.strip("()").split(","))
                add(f"one epoch ({args.reviews} × {SEQ_LEN}) on {args.device}, batch {batch_size}: "
                    f"tlx+{backend_name} ÷ plain {backend_name}", f"{ratio:.3f} ({ours:.1f} s ÷ {plain:.1f} s)")
    if "kernels" in args.only:
        for backend_name in args.backends[:1] if args.quick else args.backends:
            seconds = {True: [], False: []}
            for _ in range(args.repeats):  # alternate pinned and free processes: a shared machine drifts
                for pinned in seconds:
                    call = f"kernels_measure({backend_name!r}, 64, {args.reviews}, {pinned})"
                    seconds[pinned].append(float(in_subprocess(call)))
            pinned, free = (statistics.median(seconds[k]) for k in (True, False))
            add(f"one tlx+{backend_name} epoch ({args.reviews} × {SEQ_LEN}) on cpu, batch 64: "
                f"kernels pinned (`reproducible: true`) ÷ free", f"{pinned / free:.3f} ({pinned:.1f} s ÷ {free:.1f} s)")
    if "lm" in args.only:
        sizes = {"vocabulary": 52, "embedding": 8, "hidden": 8, "batch": 4, "window": 8} if args.quick else {}
        seconds = float(in_subprocess(f"lm_step_measure('torch', {args.device!r}, {args.repeats}, {sizes})"))
        size = {**LM_SIZES, **sizes}
        words = size["batch"] * size["window"]
        add(f"one step of the GPU recipe's LM on {args.device} (LSTM-{size['hidden']}, a softmax over "
            f"{size['vocabulary']:,} words, batch {size['batch']} × {size['window']})",
            f"{seconds:.4g} s: {words / seconds:,.0f} words/s, an epoch ({LM_WORDS / 1e6:.1f} M words) "
            f"{LM_WORDS / words * seconds / 60:,.1f} min")
    if {"stages", "e2e", "processes"} & set(args.only):
        with tempfile.TemporaryDirectory() as tmp:
            clone = fresh_clone(Path(tmp), args.params)
            if {"stages", "e2e"} & set(args.only):
                plain, stages, noop = repro_end_to_end(clone, args.repeats)  # the stage measures need its data
            else:  # train's inputs
                subprocess.run(["dvc", "repro", "lm"], cwd=clone, check=True, stdout=subprocess.DEVNULL)
            if "stages" in args.only:
                seconds, mb = stage_measure("prepare", clone, ["raw"], args.repeats)
                add("`prepare` of the whole archive", f"{seconds:.1f} s")
                add("peak memory of `prepare`", f"{mb:.0f} MB")
                seconds, mb = stage_measure("evaluate", clone, ["prepared", "model"], args.repeats)
                add("`evaluate` of the whole test split", f"{seconds:.1f} s")
                add("peak memory of `evaluate`", f"{mb:.0f} MB")
            if "processes" in args.only:
                seconds = processes_measure(clone, args.repeats)
                add("`train`, one epoch, as a stage process: 2 processes (gloo, a thread each) ÷ 1 (2 threads)",
                    f"{seconds[2] / seconds[1]:.3f} ({seconds[2]:.1f} s ÷ {seconds[1]:.1f} s)")
        if "e2e" in args.only:
            whole, its_train = plain[0], plain[1]["train"]  # the same run's train: two runs of it differ more
            add("default `dvc repro` on torch, from a fresh clone", f"{whole:.1f} s, its `train` "
                f"{its_train:.1f} s + {whole - its_train:.1f} s")
            train = stages["train"][0]
            for stage, (seconds, mb) in stages.items():
                add(f"`dvc repro --force -s {stage}`", f"{seconds:.1f} s, peak {mb:.0f} MB")
            forced = sum(seconds for seconds, _ in stages.values())
            add("… all stages forced, one after the other", f"{forced:.1f} s, `train`'s own {train:.1f} s + "
                f"{forced - train:.1f} s")
            add("`dvc repro` when nothing changed", f"{noop:.2f} s")

    command = "python benchmarks/run.py " + " ".join(sys.argv[1:])
    report = "\n".join([f"Measured {date.today()} on {machine()}.", f"Command: `{command.strip()}`", "",
                        "| measure | result |", "| --- | --- |", *(f"| {a} | {b} |" for a, b in rows), ""])
    print(report)
    if args.write:
        args.write.write_text(report)


if __name__ == "__main__":
    main()
