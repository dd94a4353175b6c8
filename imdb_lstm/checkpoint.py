"""Resumable training: after each epoch, train keeps what it needs to go on from the next one.

A checkpoint is a folder outside DVC's outputs (so `dvc repro` leaves it where a killed run put it):
state.json (the fingerprint it was made for, the epoch, the epochs' log, early stopping's best epoch,
the batch-order RNG) and arrays.npz (weights, the optimizer's and the backend RNG's state, early
stopping's best weights), written atomically. It is used only for the same fingerprint: the same
params, input files, code and backend version; anything else starts over. Nothing in it is pickled.
"""
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np

from imdb_lstm.files import atomic_dir, sha256_file, write_json, write_npz

CHECKPOINT = Path(".checkpoints/train")
CODE = sorted(Path(__file__).parent.rglob("*.py"))  # the package, backends/ too; the stage adds its own script


def fingerprint(params, files, backend_version):
    """What a checkpoint must have been made for: a hash of params, the files' contents, the
    package's code and the backend's version."""
    digest = hashlib.sha256(json.dumps({"params": params, "backend": backend_version}, sort_keys=True).encode())
    for path in [*files, *CODE]:
        if Path(path).is_file():
            digest.update(f"{Path(path).name}:{sha256_file(path)}\n".encode())  # not the folder: queue runs move
    return digest.hexdigest()


def save_checkpoint(state, arrays, folder=CHECKPOINT):
    """Write `state` (JSON values) and `arrays` ({name: list of arrays}) as the folder's checkpoint."""
    with atomic_dir(folder) as tmp:
        write_npz(tmp / "arrays.npz", [array for group in arrays.values() for array in group])
        # the groups as a list: in the order written (state.json's mappings are written with sorted keys)
        write_json(tmp / "state.json", {**state, "arrays": [[name, len(group)] for name, group in arrays.items()]})


def load_checkpoint(expected_fingerprint, folder=CHECKPOINT):
    """(state, arrays) of the folder's checkpoint if it was made for `expected_fingerprint`, else None.
    A damaged or partial checkpoint counts as none: training starts over."""
    try:
        state = json.loads((Path(folder) / "state.json").read_text())
        if state.get("fingerprint") != expected_fingerprint:
            return None
        with np.load(Path(folder) / "arrays.npz", allow_pickle=False) as npz:
            members = iter(npz[str(i)] for i in range(sum(count for _, count in state["arrays"])))
            arrays = {name: [next(members) for _ in range(count)] for name, count in state.pop("arrays")}
        return state, arrays
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile):
        return None


def remove_checkpoint(folder=CHECKPOINT):
    shutil.rmtree(folder, ignore_errors=True)
