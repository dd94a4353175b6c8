"""Atomic writes: an output exists complete, or not at all. And weights.npz files (model, language
model) read strictly: shapes checked from their headers first, nothing unpickled."""
import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from imdb_lstm.errors import PipelineError, check_interrupted, quote


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield Path(tmp)
        check_interrupted()
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_json(path, data):
    """Strict JSON: a NaN or infinity, which strict parsers reject and which no metric should be, is refused."""
    try:
        text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except ValueError:
        bad = sorted(key for key, value in data.items() if isinstance(value, float) and not math.isfinite(value))
        raise PipelineError(f"{path}: {', '.join(bad) or 'a value'} is not a finite number; nothing was "
                            "written (the model learned nothing usable: check the params)") from None
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path, header, rows):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(str(v) for v in row) + "\n")


def write_npz(path, arrays):
    """numpy's .npz of `arrays` (members "0", "1", ...), the same bytes for the same arrays: np.savez
    stamps each member with the time of writing, which changed data/model's hash in dvc.lock every run."""
    with zipfile.ZipFile(path, "w") as archive:
        for i, array in enumerate(arrays):
            info = zipfile.ZipInfo(f"{i}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        check_interrupted()
        tmp.chmod(0o755)  # mkdtemp makes 0700
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_leftovers(path):
    """Remove the temporary siblings of `path` that a killed run (kill -9, power cut) left behind.
    Safe: one stage at a time writes in a checkout (imdb_lstm.errors.run_stage holds the lock)."""
    for leftover in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def read_weights(path, shapes, described_by, fix, exact=False):
    """The first len(shapes) arrays of a weights.npz, which must have those `shapes` (and be all of its
    arrays if `exact`), finite float32. Their headers are checked before anything is loaded, and nothing
    is unpickled (tlx's own npz loader does: allow_pickle=True). PipelineError ending in `fix` otherwise."""
    found = weight_shapes(path, fix)
    if (found if exact else found[:len(shapes)]) != shapes:
        raise PipelineError(f"{path} does not fit {described_by}: {fix}")
    try:
        with np.load(path, allow_pickle=False) as saved:
            weights = [saved[str(i)] for i in range(len(shapes))]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise PipelineError(f"{path} is damaged ({quote(str(error), repr_=False)}): {fix}") from None
    if not all(np.isfinite(w).all() for w in weights):
        raise PipelineError(f"{path} holds NaN or infinite weights: {fix}")
    return weights


def weight_shapes(path, fix):
    """The shapes of the arrays "0", "1", ... in a weights.npz, read from their headers only."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if sorted(names) != sorted(f"{i}.npy" for i in range(len(names))):
                raise ValueError(f"members {quote(names[:5])} are not 0.npy, 1.npy, ...")
            shapes = []
            for i in range(len(names)):
                with archive.open(f"{i}.npy") as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(member)
                    if dtype != np.float32:
                        raise ValueError(f"array {i} is {dtype}, not float32")
                    shapes.append(tuple(shape))
            return shapes
    except FileNotFoundError:
        raise PipelineError(f"no weights.npz in {path.parent}: {fix}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise PipelineError(f"{path} is damaged ({quote(str(error), repr_=False)}): {fix}") from None
