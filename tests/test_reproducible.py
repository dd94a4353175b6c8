"""The same params give the same bits: reruns and thread counts on this machine for every backend, and
the committed golden hash of a tiny train + evaluate run where a backend promises this CPU the bits of
other CPU models (its CROSS_CPU_FLAG is one of this CPU's features: kernels.same_bits_as_other_cpus).

A different CPU makes the math libraries pick other kernels (oneDNN's and ATen's instruction sets,
MKL's vendor paths) and other thread counts. Each setting of OTHER_CPUS makes this machine pick what another
one would; with the pins of imdb_lstm/kernels.py every one must give the golden hash. Each golden hash came out
on an AMD and an Intel CPU with the backend's flag, and holds for the pinned frameworks of the requirements files;
they cover model.json and train.json too: a change of what those files hold changes them (rerun the
test and commit the one hash every setting gives). eval.json enters them with the backend and its version
beside its figures (train.json's), as write_json lays them out: a golden hash stands for the figures and the
framework that computed them.
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest
from conftest import BACKENDS, ROOT, require
from project import make_project, set_params

from imdb_lstm import backends, kernels

GOLDEN = {
    "paddle": "7cb549418b57a3dc8f7b773d17990b887a41f046a3dcda960ba1f39354d8082a",
    "tensorflow": "90ec74ab6ee23fcb434ab7b46eea5fca97c0e5bba9f00661a6df1d897084ea96",
    "mindspore": "b6442593e4fbc7d4d3c6cd81c63c1318a6715b228bf10bd7860b48ccf0549dd0",
}
# What every machine is promised: reruns and any thread count. "threads" is the thread count the backend
# starts with, as on a machine with that many cores (1 and a count above this machine's cores bracket the
# others); {} is a rerun of the run before it. torch also keeps a user's oneDNN math mode.
THIS_MACHINE = {
    "torch": [{}, {"threads": 1}, {"threads": 8}, {"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"}],
    "paddle": [{}, {"threads": 1}, {"threads": 8}],
    "tensorflow": [{}, {"threads": 1}, {"threads": 8}],
    "mindspore": [{}, {"threads": 1}, {"threads": 25}],
}
# What another CPU would pick, simulated here (instruction-set limits, MKL paths): run only where the
# backend promises this CPU the bits of other CPU models, and there they must give the golden hash.
OTHER_CPUS = {
    "torch": [],
    "paddle": [{"ONEDNN_MAX_CPU_ISA": "AVX2"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
               {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, {"MKL_CBWR": "COMPATIBLE"}, {"MKL_CBWR": "AVX512"},
               {"MKL_DEBUG_CPU_TYPE": "2"}, {"FLAGS_use_mkldnn": "1"}],
    "tensorflow": [{"TF_ENABLE_ONEDNN_OPTS": "1"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
                   {"ONEDNN_MAX_CPU_ISA": "SSE41"},
                   {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}],
    "mindspore": [{"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"},
                  {"ONEDNN_MAX_CPU_ISA": "SSE41"}],
}
# Two settings that change the bits on any CPU when nothing is pinned: proof that the test can fail.
DIFFERENT_UNPINNED = {
    "torch": ({"threads": 1}, {"threads": 2}),
    "paddle": ({"MKL_CBWR": "COMPATIBLE"}, {"MKL_CBWR": "AVX2", "MKL_DEBUG_CPU_TYPE": "5"}),
    "tensorflow": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}),
    "mindspore": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}),
}
OUTPUTS = ["data/model/weights.npz", "data/model/model.json", "data/model/train.json", "metrics/epochs/metrics.json",
           "metrics/epochs/plots/metrics/loss.tsv", "metrics/epochs/plots/metrics/accuracy.tsv",
           "metrics/eval.json", "metrics/roc.csv", "metrics/confusion.csv"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A project folder with the tests' small archive fetched and prepared (reviews padded to 200)."""
    project, cache = make_project(tmp_path_factory.mktemp("reproducible"), {"epochs": 2, "data": {"vocab_size": 100}})
    for stage in ("fetch", "prepare"):
        subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project, check=True, capture_output=True,
                       env={**os.environ, "IMDB_CACHE_DIR": str(cache)})
    return project


def train_and_evaluate(project, backend, setting, reproducible=True):
    """sha256 over every output of the train and evaluate stages, run in one process with `setting`."""
    set_params(project / "params.yaml", {"backend": backend, "reproducible": reproducible})
    setting = dict(setting)
    threads = setting.pop("threads", None)
    start = ""
    if threads and backend == "torch":
        start = f"import torch; torch.set_num_threads({threads})\n"
    elif threads and backend == "mindspore":
        start = f"import mindspore.device_context.cpu.op_tuning as t; t.threads_num({threads})\n"
    elif threads and backend == "tensorflow":
        setting.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
    elif threads:
        setting.update(OMP_NUM_THREADS=str(threads), FLAGS_paddle_num_threads=str(threads))
    program = start + "import runpy\nfor stage in ('train', 'evaluate'):\n" \
                      "    runpy.run_module(f'stages.{stage}', run_name='__main__')\n"
    env = {**os.environ, **setting, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", program], cwd=project, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    digest = hashlib.sha256()
    for name in OUTPUTS:
        digest.update(covered_bytes(project, name))
    return digest.hexdigest()


def covered_bytes(project, name):
    """Output `name`'s bytes as the golden hashes cover them (eval.json: with train.json's backend)."""
    if name != "metrics/eval.json":
        return (project / name).read_bytes()
    figures = {**json.loads((project / name).read_text()),
               "backend": json.loads((project / "data/model/train.json").read_text())["backend"]}
    return (json.dumps(figures, indent=2, sort_keys=True) + "\n").encode()


def test_the_golden_hashes_are_those_of_the_backends_that_promise_other_cpus_the_same_bits():
    assert set(GOLDEN) == {name for name in BACKENDS if backends.module(name).CROSS_CPU_FLAG}
    assert set(THIS_MACHINE) == set(OTHER_CPUS) == set(backends.NAMES)
    assert {name for name, settings in OTHER_CPUS.items() if settings} == set(GOLDEN)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_setting_gives_the_same_bits(prepared, backend):
    """On this machine for every backend; other CPUs' settings and the committed bits too where this CPU
    is promised them."""
    require(backend)
    promised = kernels.same_bits_as_other_cpus(backends.module(backend))
    settings = THIS_MACHINE[backend] + (OTHER_CPUS[backend] if promised else [])
    hashes = [(setting, train_and_evaluate(prepared, backend, setting)) for setting in settings]
    expected = GOLDEN[backend] if promised else hashes[0][1]
    assert hashes == [(setting, expected) for setting, _ in hashes]


@pytest.mark.parametrize("backend", BACKENDS)
def test_unpinned_kernels_change_the_bits(prepared, backend):
    """Without the pins the same settings give other bits, so the test above can fail."""
    require(backend)
    one, other = (train_and_evaluate(prepared, backend, setting, reproducible=False)
                  for setting in DIFFERENT_UNPINNED[backend])
    assert one != other
