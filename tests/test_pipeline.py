"""End to end: the real `dvc repro` in a fresh git repo, on a tiny archive in the real IMDB layout."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT
from imdb_fixture import make_archive

PROJECT = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore",
           "stages", "imdb_lstm"]
TINY = {"epochs": 3, "batch_size": 16, "lr": 0.01,
        "data": {"vocab_size": 50, "seq_len": 24}, "model": {"embedding_dim": 8, "hidden_size": 8}}


def copy_project(dest):
    for name in PROJECT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, dest / name)


def set_params(path, changes):
    params = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            params[key].update(value)
        else:
            params[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


class Repo:
    """A git + DVC repository of the project in a temp folder, with its own download cache."""

    def __init__(self, path, cache):
        self.path = path
        bin_dir = os.path.dirname(sys.executable)
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "IMDB_CACHE_DIR": str(cache), "DVC_NO_ANALYTICS": "1",
                    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}

    def run(self, *args, check=True):
        result = subprocess.run(args, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=900)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def commit(self, message):
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", message)

    def json(self, name):
        return json.loads((self.path / name).read_text())


def make_repo(tmp_path, backend):
    cache, repo_dir = tmp_path / "cache", tmp_path / "repo"
    cache.mkdir()
    repo_dir.mkdir()
    sha256 = make_archive(cache / "aclImdb_v1.tar.gz", n_per_class=100)
    copy_project(repo_dir)
    set_params(repo_dir / "params.yaml", {**TINY, "backend": backend, "data": {**TINY["data"], "sha256": sha256}})
    repo = Repo(repo_dir, cache)
    repo.run("git", "init", "-q")
    repo.commit("project")
    return repo


@pytest.fixture(scope="module", params=["torch"])
def repo(request, tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp(request.param), request.param)
    repo.backend = request.param
    repo.first_run = repo.run("dvc", "repro")
    return repo


def test_repro_writes_every_output(repo):
    prepared = repo.path / "data/prepared"
    for split in ("train", "test"):
        ids, labels = np.load(prepared / f"{split}_ids.npy"), np.load(prepared / f"{split}_labels.npy")
        assert ids.shape == (200, 24) and ids.dtype == np.int64
        assert labels.shape == (200,) and labels.dtype == np.int64 and set(labels) == {0, 1}
    assert len(json.loads((prepared / "vocab.json").read_text())["words"]) <= 52
    assert (repo.path / "data/model/weights.npz").exists()
    train, evaluation = repo.json("metrics/train.json"), repo.json("metrics/eval.json")
    assert train["epochs"] == 3 and train["backend"].startswith(repo.backend)
    assert evaluation["reviews"] == 200
    assert evaluation["accuracy"] > 0.75, "the fixture's labels are learnable"
    assert set(evaluation) >= {"accuracy", "precision", "recall", "f1", "roc_auc", "loss"}
    assert (repo.path / "metrics/train_log.csv").read_text().splitlines()[0] == "epoch,loss,accuracy"
    for stage in ("fetch", "prepare", "train", "evaluate"):
        assert f"Running stage '{stage}'" in repo.first_run.stdout


def test_second_repro_runs_nothing(repo):
    again = repo.run("dvc", "repro")
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout


def test_experiment_reruns_only_train_and_evaluate_and_metrics_diff_shows_it(repo):
    repo.commit("tiny run")
    experiment = repo.run("dvc", "exp", "run", "-S", "epochs=2")
    ran = {stage for stage in ("fetch", "prepare", "train", "evaluate") if f"Running stage '{stage}'" in experiment.stdout}
    assert ran == {"train", "evaluate"}
    diff = json.loads(repo.run("dvc", "metrics", "diff", "--json").stdout)
    assert diff["metrics/train.json"]["epochs"] == {"old": 3, "new": 2, "diff": -1}
