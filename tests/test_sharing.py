"""Sharing runs between clones as a team does, through a git remote and a DVC remote (local folders here):
an experiment pushed from one clone shows with its metrics in another, which pulls its model and data
without running a stage."""
import json
import subprocess

from project import Repo, prepared_repo


def clone_of(origin, folder):
    """A second clone of `origin`, with an empty download cache: a stage that needs the archive fails."""
    subprocess.run(["git", "clone", "-q", str(origin), str(folder)], check=True)
    (folder.parent / "empty-cache").mkdir()
    return Repo(folder, folder.parent / "empty-cache")


def test_an_experiment_pushed_from_one_clone_is_shown_and_pulled_in_another_without_running_it(tmp_path):
    first = prepared_repo(tmp_path / "first")
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    first.run("dvc", "remote", "add", "-d", "team", str(tmp_path / "dvc-remote"))
    first.commit("a DVC remote")
    first.run("git", "remote", "add", "origin", str(origin))
    first.run("git", "push", "-q", "origin", "HEAD")
    first.run("dvc", "push", "-q")  # the committed outputs (the archive, prepare's), for the clones to pull
    first.run("dvc", "exp", "run", "-n", "shared", "-S", "epochs=2")
    first.run("dvc", "exp", "push", "origin", "shared")  # its commit to origin, its outputs to the DVC remote
    accuracy = first.json("metrics/eval.json")["accuracy"]
    model = (first.path / "data/model/weights.npz").read_bytes()

    second = clone_of(origin, tmp_path / "second" / "repo")
    assert "shared" in second.run("dvc", "exp", "list", "origin").stdout
    second.run("dvc", "exp", "pull", "origin", "shared")
    shown = json.loads(second.run("dvc", "exp", "show", "--json").stdout)
    runs = [run for commit in shown for run in commit.get("experiments") or [] if run.get("name") == "shared"]
    metrics = runs[0]["revs"][0]["data"]["metrics"]["metrics/eval.json"]["data"]
    assert metrics["accuracy"] == accuracy
    second.run("dvc", "exp", "apply", "shared")
    second.run("dvc", "pull", "-q")
    assert (second.path / "data/model/weights.npz").read_bytes() == model
    assert second.run("dvc", "status").stdout.strip() == "Data and pipelines are up to date."
