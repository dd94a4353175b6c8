"""The GPU recipe: a language model on the 75,000 training and unlabelled reviews, and the classifier
fine-tuned from it, run through the project's own stages in one call, and the record that run leaves.

    IMDB_CACHE_DIR=gpu-run python benchmarks/gpu_recipe.py --out OUT [--seeds 42 43] [-S key=value ...]

It writes RECIPE into params.yaml (with the -S settings on top, as `dvc exp run -S` does) and runs the stages
up to the plots, in order, each by its own command in dvc.yaml (what `dvc repro report` runs, without DVC,
which a bare GPU machine lacks); for each further seed, `train`, `evaluate` and `report` again from the same
language model (`--again`: only those, the rest having run in an earlier call). After each stage OUT holds
what is done (a call cut short still brings it back): params.yaml, stages.json (each stage's seconds, the
machine, each seed's scores and its model's sha256), logs/STAGE-SEED.log, lm.json, and per seed seed-N/
with train.json, eval.json, dvclive's epochs/ and the plots. `--show` prints the recipe as the `dvc exp run`
command that makes it where DVC is installed.

A GPU machine without internet needs the wheels of requirements-gpu.txt (its Python, 3.12, has torch and the
rest) and the archive, in a gitignored folder that travels with the checkout:

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -r requirements-gpu.txt -d gpu-run/wheels
    cp ~/.cache/imdb_lstm/aclImdb_v1.tar.gz gpu-run/
    # there, in the checkout:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site gpu-run/wheels/*.whl
    export PYTHONPATH=/tmp/site:$PWD IMDB_CACHE_DIR=$PWD/gpu-run
    timeout 520 python3 benchmarks/gpu_recipe.py --out /tmp/record; tar czf record.tgz -C /tmp record
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from imdb_lstm.errors import PipelineError, run_stage
from imdb_lstm.files import sha256_file
from imdb_lstm.params import SCHEMA, check, check_rules

ROOT = Path(__file__).resolve().parents[1]
# An LSTM-1152 language model (embedding 400, a softmax over all 30,000 words tied to the embedding, the
# reviews read as one stream with the state carried) fine-tuned as ULMFiT does (concat pooling, layers
# thawed one an epoch, rates ÷ 2.6 a layer down on a slanted triangle), with adversarial training on top;
# the epoch kept is validation's choice.
RECIPE = {
    "backend": "torch", "device": "gpu", "epochs": 4, "batch_size": 64, "lr": 0.002, "validation": 0.1,
    "patience": 4, "adversarial": 0.02,
    "data.vocab_size": 30000, "data.seq_len": 400, "data.truncate": "pre", "data.pad": "pre",
    "model.embedding_dim": 400, "model.hidden_size": 1152, "model.num_layers": 1, "model.bidirectional": False,
    "model.pooling": "last_max_mean", "model.dropout": 0.1, "model.trim_padding": True,
    "lm.use": True, "lm.softmax": "tied", "lm.carry_state": True, "lm.steps": 70, "lm.batch_size": 128,
    "lm.epochs": 13, "lm.lr": 0.002, "lm.schedule": "slanted", "lm.dropout": 0.1,
    "lm.frozen_epochs": 1, "lm.fine_tune": "ulmfit", "lm.fine_tune_lr": 0.001,
}
TARGET = "report"  # the stages up to the plots: every one but the baseline
AGAIN = ("train", "evaluate", "report")  # what another seed reruns: the language model stays


def settings(recipe, overrides):
    """RECIPE's settings with `overrides` ("key=value" strings, the value read as YAML, as `dvc exp run -S`)
    on top."""
    chosen = dict(recipe)
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep:
            raise PipelineError(f"-S {override}: write it as key=value, such as -S lm.epochs=2")
        chosen[key] = yaml.safe_load(value)
    return chosen


def write_params(path, chosen):
    """params.yaml with `chosen` (dotted keys) set, once checked as every stage checks it."""
    params = yaml.safe_load(path.read_text())
    for key, value in chosen.items():
        *sections, name = key.split(".")
        section = params
        for part in sections:
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict) or name not in section:
            raise PipelineError(f"-S {key}: params.yaml has no such key")
        section[name] = value
    check(params, SCHEMA, path)
    check_rules(params, path)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def stage_order(pipeline, target):
    """The stages `target` needs (those whose outputs it reads, theirs, and so on) and `target`, each after the
    ones it reads from: what `dvc repro TARGET` runs."""
    stages = pipeline["stages"]
    outs = {name: [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", []) + stage.get(
        "metrics", []) + stage.get("plots", [])] for name, stage in stages.items()}
    order = []

    def visit(name):
        for dep in stages[name].get("deps", []):
            for other, paths in outs.items():
                if other != name and other not in order and any(
                        dep == path or dep.startswith(path + "/") or path.startswith(dep + "/") for path in paths):
                    visit(other)
        if name not in order:
            order.append(name)

    visit(target)
    return order


def run(repo, name, command, log):
    """Run one stage's command in `repo`, its output to the file `log`; the seconds it took."""
    log.parent.mkdir(parents=True, exist_ok=True)
    if command.startswith("python "):  # this interpreter: a bare machine may have no `python`
        command = f"{sys.executable} {command[len('python '):]}"
    start = time.perf_counter()
    with open(log, "w") as output:
        done = subprocess.run(command, shell=True, cwd=repo, stdout=output, stderr=subprocess.STDOUT)
    seconds = round(time.perf_counter() - start, 1)
    last = log.read_text(errors="replace").strip().splitlines()[-1:]
    print(f"{name}: {seconds} s{': ' + last[0] if last else ''}", flush=True)
    if done.returncode:
        raise PipelineError(f"stage {name} failed (exit {done.returncode}); its log: {log}")
    return seconds


def collect(repo, out, seed):
    """Copy what the record keeps of the run so far into `out` (per seed under seed-N/)."""
    copies = {"metrics/lm.json": "lm.json", "data/lm/lm.json": "lm-model.json", "params.yaml": "params.yaml"}
    per_seed = {"data/model/train.json": "train.json", "metrics/eval.json": "eval.json", "metrics/epochs": "epochs",
                "metrics/plots": "plots", "data/model/model.json": "model.json"}
    copies.update({source: f"seed-{seed}/{name}" for source, name in per_seed.items()})
    for source, name in copies.items():
        source, target = repo / source, out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        elif source.exists():
            shutil.copy(source, target)


def machine():
    """The GPU's and CPU's names, as far as this machine says."""
    gpu = shutil.which("nvidia-smi") and subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"gpu": gpu or None, "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def exp_run_command(chosen):
    shown = lambda value: value if isinstance(value, str) else json.dumps(value)  # noqa: E731
    return "dvc exp run " + " ".join(f"-S {key}={shown(value)}" for key, value in chosen.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where the record goes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to run in (this one)")
    parser.add_argument("--again", action="store_true",
                        help="the other stages ran already (an earlier call): run only " + ", ".join(AGAIN))
    parser.add_argument("--show", action="store_true", help="print the recipe's `dvc exp run` command")
    args = parser.parse_args(argv)
    chosen = settings(RECIPE, args.overrides)
    if args.show:
        print(exp_run_command(chosen))
        return
    if args.out is None:
        parser.error("--out is required")
    repo, out = args.repo.resolve(), args.out.resolve()
    record = {"command": exp_run_command({**chosen, "seed": args.seeds[0]}), "machine": machine(), "stages": {},
              "seeds": {}}
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    stages = stage_order(pipeline, TARGET)
    for number, seed in enumerate(args.seeds):
        write_params(repo / "params.yaml", {**chosen, "seed": seed})
        first = number == 0 and not args.again
        for name in stages if first else [name for name in stages if name in AGAIN]:
            label = name if first else f"{name} (seed {seed})"
            record["stages"][label] = run(repo, label, pipeline["stages"][name]["cmd"],
                                          out / "logs" / f"{name}-{seed}.log")
            collect(repo, out, seed)
            (out / "stages.json").write_text(json.dumps(record, indent=2) + "\n")
        train, scored = (json.loads((repo / name).read_text())
                         for name in ("data/model/train.json", "metrics/eval.json"))
        weights = repo / "data/model/weights.npz"  # too large to bring back (a GPU model is about 90 MB): named
        record["seeds"][seed] = {key: train.get(key) for key in ("best_epoch", "val_accuracy", "val_loss")} | {
            "test_accuracy": scored["accuracy"], "model_bytes": weights.stat().st_size,
            "model_sha256": sha256_file(weights)}
        (out / "stages.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["seeds"], indent=2))


if __name__ == "__main__":
    run_stage(main, lock=False)  # the stages it runs take the checkout's lock
