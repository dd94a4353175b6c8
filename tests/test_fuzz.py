"""Fuzzing, bounded in time: random params values, random bytes as archive members and random damage to
model files must each end in success or one `error:` line (exit 0 or 1), never a traceback, never a
temporary file left behind, and in bounded memory."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT, run_backend
from helpers import PRINT_PEAK_MB
from imdb_fixture import make_archive
from project import make_project

SEED = int(os.environ.get("FUZZ_SEED", "0"))  # a failing case names its seed; rerun with FUZZ_SEED=...

VALUES = """[0, -1, 1, 2**40, 0.5, -0.0, 1e300, float("nan"), float("inf"), "", "x" * 300_000, "torch",
 "1e-3", None, True, False, [], [1, [2, [3, [4, [5]]]]], {"a": {"b": 1}}, "\\x00\\uffff", "../../etc"]"""

PARAMS_FUZZ = f"""
import copy, random, sys, yaml
from imdb_lstm.errors import PipelineError
from imdb_lstm.params import load_params, SCHEMA
rng = random.Random({SEED})
values = {VALUES}
base = yaml.safe_load(open("params.yaml"))
keys = [(k,) for k in SCHEMA] + [(s, k) for s in SCHEMA if isinstance(SCHEMA[s], dict) for k in SCHEMA[s]]
for case in range(1000):
    params = copy.deepcopy(base)
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(keys)
        target = params
        for part in key[:-1]:
            target = target[part] if isinstance(target.get(part), dict) else {{}}
        target[key[-1]] = rng.choice(values) if rng.random() < 0.9 else rng.random() * 10 ** rng.randint(-9, 9)
    # libyaml writes the cases: PyYAML's own writer would take most of the test's time
    text = yaml.dump(params, Dumper=yaml.CSafeDumper) if rng.random() < 0.9 \
        else bytes(rng.randrange(256) for _ in range(200)).decode("latin-1")
    open("fuzz.yaml", "w", encoding="utf-8", errors="surrogateescape").write(text)
    try:
        load_params("fuzz.yaml")
    except PipelineError as error:
        assert len(str(error)) < 1000, (case, len(str(error)))
""" + PRINT_PEAK_MB

ARCHIVE_FUZZ = f"""
import gzip, io, random, sys, tarfile
from imdb_lstm.archive import fingerprint, iter_reviews
from imdb_lstm.errors import PipelineError
rng = random.Random({SEED})
plain = gzip.decompress(open(sys.argv[1], "rb").read())
for case in range(300):
    data = bytearray(plain)
    how = rng.choice(["flip", "cut", "member"])
    if how == "flip":
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == "cut":
        del data[rng.randrange(len(data)):]
    else:  # a review member of random bytes, up to 2 MB
        size = rng.choice([0, 1, 100, 5000, 1 << 20, 2 << 20])
        info = tarfile.TarInfo(f"aclImdb/train/pos/{{rng.randrange(10**6)}}_9.txt")
        info.size = size
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
            tar.addfile(info, io.BytesIO(rng.randbytes(size)))
        end = len(bytes(data).rstrip(b"\\0"))
        data = data[:end + (-end % 512)] + out.getvalue()
    open("fuzz.tar.gz", "wb").write(gzip.compress(bytes(data), compresslevel=1, mtime=0))
    for read in (fingerprint, lambda p: list(iter_reviews(p, include_unsup=True))):
        try:
            read("fuzz.tar.gz")
        except PipelineError as error:
            assert len(str(error)) < 1000, (case, how, len(str(error)))
""" + PRINT_PEAK_MB

MODEL_FUZZ = f"""
import json, random, shutil
from pathlib import Path
from imdb_lstm.errors import PipelineError
from imdb_lstm.model import SentimentLSTM, load_model, save_model
rng = random.Random({SEED})
values = {VALUES}
folder = Path("model")
folder.mkdir()
save_model(SentimentLSTM(40, 8, 8), folder, vocabulary="v")
good = {{name: (folder / name).read_bytes() for name in ("model.json", "weights.npz")}}
for case in range(150):
    for name, data in good.items():
        (folder / name).write_bytes(data)
    if rng.random() < 0.5:
        info = json.loads(good["model.json"])
        info[rng.choice(list(info) + ["extra"])] = rng.choice(values) if rng.random() < 0.8 else rng.randrange(10**7)
        (folder / "model.json").write_text(json.dumps(info))
    else:
        data = bytearray(good["weights.npz"])
        for _ in range(rng.randint(1, 10)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        (folder / "weights.npz").write_bytes(bytes(data[:rng.randrange(len(data) + 1)]) if rng.random() < 0.3 else data)
    try:
        load_model(folder)
    except PipelineError as error:
        assert len(str(error)) < 1000, (case, len(str(error)))
""" + PRINT_PEAK_MB


def run_python(code, cwd, *args):
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and "Traceback" not in done.stderr, f"FUZZ_SEED={SEED}\n{done.stderr[-3000:]}"
    return int(done.stdout.split()[-1])


def test_random_params_are_refused_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    assert run_python(PARAMS_FUZZ, tmp_path) < 200


def test_random_archive_damage_and_members_are_refused_in_bounded_memory(tmp_path):
    make_archive(tmp_path / "tiny.tar.gz", n_per_class=5, n_unsup=3)
    assert run_python(ARCHIVE_FUZZ, tmp_path, str(tmp_path / "tiny.tar.gz")) < 200


@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_random_damage_to_model_files_is_refused_in_one_line(tmp_path, backend):
    program = "import os\nos.chdir(" + repr(str(tmp_path)) + ")\n" + MODEL_FUZZ
    result = run_backend(backend, program)
    assert result.returncode == 0 and "Traceback" not in result.stderr, f"FUZZ_SEED={SEED}\n{result.stderr[-3000:]}"
    assert int(result.stdout.split()[-1]) < 1500  # the backend itself takes most of it


@pytest.mark.parametrize("case", range(4))
def test_stages_under_random_params_exit_0_or_1_and_leave_no_temporary_files(tmp_path, case):
    import random

    import yaml
    rng = random.Random(SEED * 100 + case)
    project, cache = make_project(tmp_path, {}, n_per_class=20, n_unsup=2)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params.update(epochs=1, batch_size=rng.choice([1, 7, 64, 10**6]), lr=rng.choice([1e-9, 0.01, 1.0]),
                  validation=rng.choice([0.0, 0.3, 0.5]))
    params["data"].update(vocab_size=rng.choice([1, 20, 10**6]), seq_len=rng.choice([1, 9, 300]),
                          pad=rng.choice(["pre", "post"]))
    params["model"].update(embedding_dim=rng.choice([1, 4, 8]), hidden_size=rng.choice([1, 5]),
                           pooling=rng.choice(["mean", "last", "masked_mean_max"]))
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("fetch", "prepare", "train", "evaluate"):
        done = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "IMDB_CACHE_DIR": str(cache)})
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, f"{params}\n{done.stderr[-3000:]}"
        if done.returncode:
            assert done.stderr.strip().splitlines()[-1].startswith("error: "), done.stderr[-3000:]
            break
    assert not [p for p in project.rglob("*.tmp")], "no temporary output is left behind"
