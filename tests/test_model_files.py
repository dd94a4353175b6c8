"""A model folder that is damaged, foreign or absurd is refused with one line before it costs memory."""
import json
import zipfile

import numpy as np
import pytest

SAVE = """
from pathlib import Path
from imdb_lstm.model import SentimentLSTM, save_model, parameter_count
folder = Path({folder!r})
for options in [{{}}, {{"bidirectional": True, "num_layers": 3, "pooling": "masked_mean_max"}}, {{"num_layers": 2}}]:
    net = SentimentLSTM(37, 8, 6, **options)
    assert parameter_count(net.config) == sum(int(np.prod(w.shape)) for w in net.all_weights), options
save_model(SentimentLSTM(37, 8, 6), folder, vocabulary="v")
"""
LOAD = """
import resource, sys
from imdb_lstm.errors import run_stage
from imdb_lstm.model import load_model
run_stage(lambda: load_model({folder!r}), lock=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.fixture(scope="module", params=["torch", "paddle"])
def saved(request, tmp_path_factory):
    """A small model saved on each backend; parameter_count matches real models of several shapes."""
    folder = tmp_path_factory.mktemp(request.param) / "model"
    folder.mkdir()
    from conftest import run_backend
    result = run_backend(request.param, SAVE.format(folder=str(folder)))
    assert result.returncode == 0, result.stderr
    return request.param, folder


def edit_json(folder, change):
    info = json.loads((folder / "model.json").read_text())
    change(info)
    (folder / "model.json").write_text(json.dumps(info))


def damage(folder, how):
    weights, info = folder / "weights.npz", folder / "model.json"
    if how == "weights truncated":
        weights.write_bytes(weights.read_bytes()[:300])
    elif how == "weights empty":
        weights.write_bytes(b"")
    elif how == "weights missing":
        weights.unlink()
    elif how == "weights of another model":
        with zipfile.ZipFile(weights, "w") as z:
            with z.open("0.npy", "w") as f:
                np.lib.format.write_array(f, np.zeros((3, 3), np.float32))
    elif how == "weights not float32":
        arrays = dict(np.load(weights))
        np.savez(weights, **{k: v.astype(np.float64) for k, v in arrays.items()})
    elif how == "weights NaN":
        arrays = dict(np.load(weights))
        arrays["0"][0, 0] = np.nan
        np.savez(weights, **arrays)
    elif how == "weights with an extra array":  # an empty one: the number of weights still fits model.json
        with zipfile.ZipFile(weights, "a") as z:
            with z.open(f"{len(z.namelist())}.npy", "w") as f:
                np.lib.format.write_array(f, np.zeros(0, np.float32))
    elif how == "weights transposed":  # as many numbers, in another shape
        arrays = dict(np.load(weights))
        arrays["0"] = np.ascontiguousarray(arrays["0"].T)
        np.savez(weights, **arrays)
    elif how == "weights cut inside an array":  # every header whole, the first array's numbers not
        with zipfile.ZipFile(weights) as z:
            members = {name: z.read(name) for name in z.namelist()}
        members["0.npy"] = members["0.npy"][:len(members["0.npy"]) // 2]
        with zipfile.ZipFile(weights, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
    elif how == "json not json":
        info.write_bytes(b"\xff{not json")
    elif how == "json a list":
        info.write_text("[1, 2]")
    elif how == "unknown key":
        edit_json(folder, lambda i: i.update(colour="blue"))
    elif how == "bad pooling":
        edit_json(folder, lambda i: i.update(pooling="sum"))
    elif how == "missing key":
        edit_json(folder, lambda i: i.pop("hidden_size"))
    elif how == "absurd sizes":  # 1,000,002 × 4096 floats: 16 GB, if anything allocated it
        edit_json(folder, lambda i: i.update(vocab_size=1_000_002, embedding_dim=4096, hidden_size=4096,
                                             num_layers=8, bidirectional=True))


CASES = {"weights truncated": "weights.npz is damaged", "weights empty": "weights.npz is damaged",
         "weights missing": "no weights.npz in", "weights of another model": "weights.npz does not fit model.json",
         "weights not float32": "not float32", "weights NaN": "NaN or infinite weights",
         "json not json": "model.json is damaged", "json a list": "model.json is damaged (not a JSON object)",
         "unknown key": "unknown key 'colour'", "bad pooling": "'pooling' is 'sum'; it must be one of",
         "missing key": "missing key 'hidden_size'", "absurd sizes": "weights.npz does not fit model.json",
         "weights with an extra array": "weights.npz does not fit model.json",
         "weights transposed": "weights.npz does not fit model.json",
         "weights cut inside an array": "weights.npz is damaged"}


@pytest.mark.parametrize("how", CASES)
def test_a_bad_model_folder_is_one_error_line_in_bounded_memory(saved, tmp_path, how):
    import shutil
    from conftest import run_backend
    backend, original = saved
    folder = tmp_path / "model"
    shutil.copytree(original, folder)
    damage(folder, how)
    result = run_backend(backend, LOAD.format(folder=str(folder)))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and CASES[how] in lines[0], result.stderr


def test_a_model_saved_without_trained_on_still_loads(saved, tmp_path):
    import shutil
    from conftest import run_backend
    backend, original = saved
    folder = tmp_path / "model"
    shutil.copytree(original, folder)
    edit_json(folder, lambda i: i.pop("trained_on"))
    result = run_backend(backend, LOAD.format(folder=str(folder)))
    assert result.returncode == 0, result.stderr


def test_word_ids_beyond_the_model_vocabulary_are_refused(saved):
    """evaluate after data/prepared changed under the model (a larger vocabulary) used to end in IndexError."""
    from conftest import run_backend
    backend, folder = saved
    program = (f"from imdb_lstm.errors import run_stage\nfrom imdb_lstm.model import load_model, predict_logits\n"
               f"run_stage(lambda: predict_logits(load_model({str(folder)!r}), np.full((3, 5), 40)), lock=False)\n")
    result = run_backend(backend, program)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "error: word ids reach 40, but the model knows 37 words" in result.stderr
