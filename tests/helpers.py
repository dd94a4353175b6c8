"""Helpers for the tests that run the package in the test process: weights, and the damage a model folder
can come to."""
import json
import zipfile

import numpy as np
from conftest import IN_PROCESS, ROOT

# A python program's last line that prints its peak memory in MB: the high-water mark of its own address space.
# (getrusage's ru_maxrss would carry over the peak of the process that started it, across fork and exec.)
PRINT_PEAK_MB = ('print(next(int(line.split()[1]) for line in open("/proc/self/status") '
                 'if line.startswith("VmHWM:")) // 1024)\n')


def weights_of(tlx, net):
    return [tlx.convert_to_numpy(w).copy() for w in net.all_weights]


def spread_weights(tlx, net, seed=3):
    """Weights drawn from N(0, 1), far from the start's small ones, so that each word and step moves the
    logits well above rounding (seed 3 leaves the small test models' ReLUs on)."""
    rng = np.random.default_rng(seed)
    tlx.files.assign_weights([rng.normal(0, 1, tuple(w.shape)).astype(np.float32) for w in net.all_weights], net)


def refuses_rate_schedules(backend_name):
    """Whether params.yaml's per-step rates (lm.fine_tune ulmfit, lm.schedule slanted) are refused on a backend,
    before any work: where tlx's optimizer holds one fixed rate, they must be."""
    from imdb_lstm.errors import PipelineError
    from imdb_lstm.params import check_rules, load_params
    refused = []
    for key, value in (("fine_tune", "ulmfit"), ("schedule", "slanted")):
        params = load_params(ROOT / "params.yaml")
        params["backend"], params["lm"]["use"], params["lm"][key] = backend_name, True, value
        try:
            check_rules(params, "params.yaml")
        except PipelineError as error:
            refused.append("changes the learning rate at every step" in str(error))
    return refused == [True, True]


def records_gradient(weight):
    """Whether the framework takes a gradient for `weight` (each names it its own way)."""
    return not weight.stop_gradient if IN_PROCESS == "paddle" else weight.requires_grad


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
