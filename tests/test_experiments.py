"""What DVC users reach for beyond `dvc repro`: a shared remote and the experiment queue."""
import json
import time

import pytest

from project import Repo, make_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("experiments"))
    repo.run("dvc", "repro")
    repo.commit("tiny run")
    return repo


def test_a_fresh_clone_pulls_data_and_model_from_a_remote_and_has_nothing_to_rerun(repo, tmp_path):
    repo.run("dvc", "remote", "add", "-d", "team", str(tmp_path / "remote"))
    repo.commit("a DVC remote")
    repo.run("dvc", "push")
    (tmp_path / "empty-cache").mkdir()
    repo.run("git", "clone", "-q", str(repo.path), str(tmp_path / "clone"))
    clone = Repo(tmp_path / "clone", cache=tmp_path / "empty-cache")  # no archive to fetch from
    clone.run("dvc", "pull")
    assert (clone.path / "data/model/weights.npz").is_file()
    assert (clone.path / "data/prepared/train_ids.npy").is_file()
    again = clone.run("dvc", "repro")
    assert "Running stage" not in again.stdout and "up to date" in again.stdout


def finished_experiments(repo):
    """{params epochs: metrics epochs} of every run `dvc exp show --json` lists with metrics."""
    found = {}

    def walk(node):
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and data.get("metrics") and data.get("rev") != "workspace":
                params = data["params"]["params.yaml"]["data"]
                found[params["epochs"]] = data["metrics"]["metrics/train.json"]["data"]["epochs"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(repo.run("dvc", "exp", "show", "--json").stdout))
    return found


def test_queued_experiments_run_to_completion_in_two_workers(repo):
    for epochs in (4, 6):
        repo.run("dvc", "exp", "run", "--queue", "-S", f"epochs={epochs}")
    repo.run("dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = repo.run("dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    repo.run("dvc", "queue", "stop", check=False)
    assert "Failed" not in status, status
    experiments = finished_experiments(repo)
    assert experiments.get(4) == 4 and experiments.get(6) == 6, (status, experiments)
