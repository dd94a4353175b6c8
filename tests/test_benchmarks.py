"""The benchmark script runs: its quick mode runs every measure, the stages on the tests' small archive."""
import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import FAST_FILES, ROOT, require
from imdb_fixture import make_archive
from project import TINY, set_params


def test_quick_benchmark_runs_every_measure(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    sha256 = make_archive(cache / "aclImdb_v1.tar.gz")
    params = tmp_path / "params.yaml"
    params.write_bytes((ROOT / "params.yaml").read_bytes())
    set_params(params, {**TINY, "epochs": 2, "data": {**TINY["data"], "sha256": sha256}})
    done = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--params", str(params)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env={**os.environ, "IMDB_CACHE_DIR": str(cache)})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    measures = [row.split("|")[1].strip() for row in rows]
    for backend in ("torch", "paddle"):
        assert any(f"tlx+{backend} ÷ plain {backend}" in m for m in measures), done.stdout
    # the kernels measure is the same code for every backend: quick runs it on the first
    assert [m.split()[1] for m in measures if "pinned" in m] == ["tlx+torch"], done.stdout
    lm = next(row for row in rows if "the GPU recipe's LM" in row).split("|")[2].split()
    seconds, per_second, minutes = float(lm[0]), float(lm[2].replace(",", "")), float(lm[9].replace(",", ""))
    assert per_second == pytest.approx(32 / seconds, rel=2e-3), lm  # a tiny LM's 4 rows of 8 words
    assert minutes == pytest.approx(17.2e6 / 32 * seconds / 60, rel=2e-3), lm
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert [m for m in measures if "--force -s" in m] == [f"`dvc repro --force -s {s}`" for s in stages]
    for name in ("`prepare` of the whole archive", "`evaluate` of the whole test split",
                 "default `dvc repro` on torch, from a fresh clone", "… all stages forced, one after the other",
                 "`dvc repro` when nothing changed",
                 "`train`, one epoch, as a stage process: 2 processes (gloo, a thread each) ÷ 1 (2 threads)"):
        assert name in measures, done.stdout
    fresh = next(row for row in rows if "from a fresh clone" in row).split("|")[2].split()
    assert fresh[2:4] == ["its", "`train`"] and 0 < float(fresh[4]) < float(fresh[0]) and float(fresh[7]) > 0, fresh
    for row in rows:
        if "÷" in row:  # "ratio (a s ÷ b s)": the ratio is of the times shown (no bound on it: a test
            # on a shared CPU saw mindspore's tiny pinned epoch take 8x the free one's)
            ratio, a, _, _, b, _ = row.split("|")[2].replace("(", "").replace(")", "").split()
            ratio, a, b = float(ratio), float(a), float(b)
            assert a > 0 and b > 0 and abs(ratio * b - a) <= 0.05 * (1 + ratio), row


def test_the_mutation_run_selects_test_files_that_exist_and_call_the_package_in_process():
    import tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    selected = config["pytest_add_cli_args_test_selection"]
    assert selected and config["source_paths"] == ["imdb_lstm/"]
    # the same files as `pytest -m fast`: the ones that call the package in the test process
    assert {argument.removeprefix("tests/") for argument in selected if not argument.startswith("--")} == FAST_FILES
    for argument in selected:
        if argument.startswith("--deselect="):  # a subprocess test inside a selected file
            test_file, test = argument.removeprefix("--deselect=").split("::")
            assert test_file in selected and f"def {test}(" in (ROOT / test_file).read_text()
            continue
        text = (ROOT / argument).read_text()
        assert "from imdb_lstm" in text, f"{argument} does not call imdb_lstm in-process"


def test_the_torch_fingerprint_finds_the_first_op_whose_bits_differ(tmp_path):
    require("torch")
    saved = tmp_path / "fingerprint.json"

    def fingerprint(*args):
        done = subprocess.run([sys.executable, "-m", "benchmarks.torch_fingerprint", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    table = fingerprint("--write", str(saved))
    ops = json.loads(saved.read_text())["ops"]
    assert [op for op, _, _ in ops[:3]] == ["embedding", "lstm", "mean over time"] and len(ops) == 25
    assert all(f"| {op} | {digest[:16]} |" in table for op, digest, _ in ops)
    assert fingerprint("--compare", str(saved)).endswith("every op gives the same bits\n")
    ops[1][1] = "0" * 64  # as if another CPU's LSTM summed in another order
    saved.write_text(json.dumps({"machine": {"cpu": "another CPU", "torch": "x"}, "ops": ops}))
    compared = fingerprint("--compare", str(saved))
    assert "| embedding | same |" in compared and "| lstm | differs |" in compared
    assert compared.endswith("first op that differs: lstm\n")
