"""A copy of the project as its own git + DVC repository in a temp folder, with a tiny archive."""
import atexit
import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from imdb_fixture import make_archive

PROJECT = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore",
           "stages", "imdb_lstm"]
TINY = {"epochs": 10, "batch_size": 20, "lr": 0.01,
        "data": {"vocab_size": 50, "seq_len": 24}, "model": {"embedding_dim": 16, "hidden_size": 16}}


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


def epochs(project):
    """train's per-epoch figures, from dvclive's files: {"loss": [...], "accuracy": [...], ...} by epoch,
    and the epochs (dvclive's steps) they share."""
    folder = project / "metrics/epochs/plots/metrics"
    figures, steps = {}, set()
    for path in sorted(folder.glob("*.tsv")):
        header, *rows = [line.split("\t") for line in path.read_text().splitlines()]
        assert header == ["step", path.stem]
        steps.add(tuple(int(step) for step, _ in rows))
        figures[path.stem] = [float(value) for _, value in rows]
    assert len(steps) == 1, "every figure has every epoch"
    return figures, list(steps.pop())


class Repo:
    """A git + DVC repository of the project in a temp folder, with its own download cache."""

    def __init__(self, path, cache):
        self.path = path
        bin_dir = os.path.dirname(sys.executable)
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "IMDB_CACHE_DIR": str(cache), "DVC_NO_ANALYTICS": "1",
                    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}

    def run(self, *args, check=True, input="", **env):
        result = subprocess.run(args, cwd=self.path, env={**self.env, **env}, input=input, capture_output=True,
                                text=True, timeout=900)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def commit(self, message):
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", message)

    def json(self, name):
        return json.loads((self.path / name).read_text())


def make_project(folder, params, name="project", **archive):
    """(project, cache): a copy of the project in folder/name with `params` set, and make_archive(**archive)
    in folder/cache, its download cache; params.yaml's data.sha256 names that archive."""
    cache, project = folder / "cache", folder / name
    cache.mkdir()
    project.mkdir()
    sha256 = make_archive(cache / "aclImdb_v1.tar.gz", **archive)
    copy_project(project)
    set_params(project / "params.yaml", {**params, "data": {**params.get("data", {}), "sha256": sha256}})
    return project, cache


def make_repo(tmp_path, backend="torch", **archive):
    """The project with TINY params on `backend`, and make_archive(**archive) in its download cache."""
    repo_dir, cache = make_project(tmp_path, {**TINY, "backend": backend}, name="repo", **archive)
    repo = Repo(repo_dir, cache)
    repo.run("git", "init", "-q")
    repo.commit("project")
    return repo


_PREPARED = {}  # (backend, archive options) → a repository made by make_repo, committed after `dvc repro prepare`


def prepared_repo(tmp_path, backend="torch", **archive):
    """make_repo's repository with fetch and prepare already run and committed: a copy of one made once
    per test process, so each test skips the two stages it does not test."""
    key = (backend, tuple(sorted(archive.items())))
    if key not in _PREPARED:
        folder = Path(tempfile.mkdtemp(prefix="prepared-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        template = make_repo(folder, backend, **archive)
        template.run("dvc", "repro", "prepare")
        template.commit("prepared")
        _PREPARED[key] = template
    template = _PREPARED[key]
    shutil.copytree(template.path.parent, tmp_path, symlinks=True, dirs_exist_ok=True)
    return Repo(tmp_path / template.path.name, tmp_path / "cache")


def run_here(repo, stage):
    """Run `stage`'s main() in the test process, in `repo`: what it computes, without the seconds a fresh
    python spends importing the backend. It loads the backend of params.yaml: the one the `tlx` fixture
    loaded (a test that runs a stage here asks for that fixture and sets `backend` to conftest.IN_PROCESS).
    A PipelineError comes out as such; a stage's process turns it into an `error:` line."""
    with contextlib.chdir(repo.path):
        importlib.import_module(f"stages.{stage}").main()


def kill_stage_after(repo, stage, line_start):
    """Start `stage` alone and SIGKILL it once it logs a line starting `line_start`: no handler runs.
    Returns what it logged until then."""
    process = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=repo.path, env=repo.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    logged = ""
    for line in process.stderr:
        logged += line
        if line.startswith(line_start):
            process.send_signal(signal.SIGKILL)
            break
    else:
        pytest.fail(f"{stage} ended before it was killed")
    process.wait(timeout=60)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return logged
