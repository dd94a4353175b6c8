"""What DVC users reach for beyond `dvc repro`: a shared remote and the experiment queue."""
import fcntl
import json
import os
import re
import shlex
import struct
import subprocess
import termios
import time

import pytest
from conftest import ROOT
from project import Repo, make_repo, set_params


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


def test_an_experiment_pushed_from_one_clone_is_shown_and_pulled_in_another_without_running_it(repo, tmp_path):
    """Sharing runs as a team does, through a git remote and a DVC remote (local folders here)."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    repo.run("dvc", "remote", "add", "-d", "-f", "team", str(tmp_path / "dvc-remote"))
    repo.commit("the team's DVC remote")
    repo.run("git", "remote", "add", "origin", str(origin))
    repo.run("git", "push", "-q", "origin", "HEAD")
    repo.run("dvc", "push", "-q")
    repo.run("dvc", "exp", "run", "-n", "shared", "-S", "epochs=2")
    repo.run("dvc", "exp", "push", "origin", "shared")  # its commit to origin, its outputs to the DVC remote
    accuracy = repo.json("metrics/eval.json")["accuracy"]
    model = (repo.path / "data/model/weights.npz").read_bytes()
    repo.run("git", "checkout", "-q", "--", ".")  # the workspace back to the committed run, for the other tests
    repo.run("dvc", "checkout", "-q")

    (tmp_path / "empty-cache").mkdir()
    subprocess.run(["git", "clone", "-q", str(origin), str(tmp_path / "second")], check=True)
    second = Repo(tmp_path / "second", cache=tmp_path / "empty-cache")  # a stage that needs the archive fails
    assert "shared" in second.run("dvc", "exp", "list", "origin").stdout
    second.run("dvc", "exp", "pull", "origin", "shared")
    runs = [node for node in exp_show_nodes(second) if node.get("name") == "shared"]
    assert runs[0]["revs"][0]["data"]["metrics"]["metrics/eval.json"]["data"]["accuracy"] == accuracy
    second.run("dvc", "exp", "apply", "shared")
    second.run("dvc", "pull", "-q")
    assert (second.path / "data/model/weights.npz").read_bytes() == model
    assert second.run("dvc", "status").stdout.strip() == "Data and pipelines are up to date."


def exp_show_nodes(repo, check=True):
    """Every JSON object in `dvc exp show --json`, depth first (none where it fails and `check` is false)."""
    shown = repo.run("dvc", "exp", "show", "--json", check=check)
    stack = [json.loads(shown.stdout)] if shown.returncode == 0 else []
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
        stack.extend(node.values() if isinstance(node, dict) else node if isinstance(node, list) else [])


def finished_experiments(repo):
    """{params epochs: epochs dvclive logged} of every run `dvc exp show --json` lists with metrics."""
    found = {}
    for node in exp_show_nodes(repo):
        data = node.get("data")
        if isinstance(data, dict) and data.get("metrics") and data.get("rev") != "workspace":
            params = data["params"]["params.yaml"]["data"]
            found[params["epochs"]] = data["metrics"]["metrics/epochs/metrics.json"]["data"]["step"]
    return found


def test_a_run_made_before_comes_back_from_the_run_cache_without_running(repo):
    """Back to params this checkout ran before, `dvc repro` restores train and evaluate from DVC's run-cache
    (their uncached outputs are metrics and plots, which it keeps); report, whose PNGs are a plain uncached
    output, runs again."""
    set_params(repo.path / "params.yaml", {"epochs": 3})
    assert "Running stage 'train'" in repo.run("dvc", "repro").stdout
    repo.run("git", "checkout", "params.yaml")
    back = repo.run("dvc", "repro").stdout
    assert "Stage 'train' is cached" in back and "Stage 'evaluate' is cached" in back, back
    assert [stage for stage in ("train", "evaluate", "report") if f"Running stage '{stage}'" in back] == ["report"]
    assert repo.run("git", "status", "--porcelain").stdout == "", "the committed run's outputs and dvc.lock"
    assert "up to date" in repo.run("dvc", "status").stdout


def test_queued_experiments_run_to_completion_in_two_workers(repo):
    for epochs in (4, 6):
        repo.run("dvc", "exp", "run", "--queue", "-n", f"epochs-{epochs}", "-S", f"epochs={epochs}")
    repo.run("dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = repo.run("dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)  # each `dvc queue status` takes a second of CPU from the queue's own workers
    repo.run("dvc", "queue", "stop", check=False)
    assert "Failed" not in status, status
    experiments = finished_experiments(repo)
    assert experiments.get(4) == 4 and experiments.get(6) == 6, (status, experiments)
    logs = repo.run("dvc", "queue", "logs", "epochs-6").stdout
    assert "epoch 6/6" in logs and len(logs.encode()) < 20_000, logs
    command = next(shlex.split(line.split("#")[0]) for line in (ROOT / "README.md").read_text().splitlines()
                   if line.startswith("dvc exp show"))  # README's: the runs side by side on a screen
    columns = repo.run(*command, "--csv").stdout.splitlines()[0].split(",")
    assert len(columns) <= 40 and {"epochs", "metrics/eval.json:loss"} <= set(columns), columns
    assert "lr" not in columns and not [column for column in columns if "/" in column and ":" not in column]
    shown = on_a_terminal(repo, [*command, "--no-pager"], 200)
    header = next(line for line in shown.splitlines() if "Experiment" in line)
    assert "metrics/eval.json:accuracy" in header and "epochs" in header and "…" not in header, shown


def on_a_terminal(repo, command, columns):
    """What `command` shows on a terminal `columns` wide (a pseudo-terminal: dvc fits its tables to it; rich
    reads TERM and COLUMNS before the terminal's size, so they say the same)."""
    terminal, process_end = os.openpty()
    fcntl.ioctl(process_end, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**repo.env, "TERM": "xterm", "COLUMNS": str(columns), "LINES": "50"}
    process = subprocess.Popen(command, cwd=repo.path, env=env, stdin=process_end, stdout=process_end,
                               stderr=process_end)
    os.close(process_end)
    shown = b""
    while chunk := _read(terminal):
        shown += chunk
    os.close(terminal)
    assert process.wait(timeout=60) == 0, shown
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode())


def _read(terminal):
    try:
        return os.read(terminal, 65536)
    except OSError:  # EIO: the process has closed the terminal
        return b""


def running_steps(repo):
    """The dvclive step (latest epoch) `dvc exp show --json` gives each experiment still running."""
    found = {}
    # `dvc exp show` fails now and then while a worker sets up its experiment's temporary copy ("directory
    # .dvc/tmp/exps/tmp.../.dvc does not exist"): nothing is shown then, and the caller polls again
    for node in exp_show_nodes(repo, check=False):
        if (node.get("executor") or {}).get("state") == "running":  # an experiment: its revs hold the data
            for rev in node.get("revs", []):
                live = rev["data"]["metrics"].get("metrics/epochs/metrics.json", {}).get("data", {})
                if "step" in live:
                    found[node.get("name")] = live["step"]
    return found


def test_a_queued_experiment_shows_its_latest_epoch_while_it_runs(repo):
    repo.run("dvc", "exp", "run", "--queue", "-n", "watched", "-S", "epochs=1000", "-S", "batch_size=2")
    # Not through repo.run: the worker it starts would hold the captured output open until it exits.
    subprocess.run(["dvc", "queue", "start"], cwd=repo.path, env=repo.env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=60)
    seen, deadline = {}, time.monotonic() + 300
    while time.monotonic() < deadline and not seen.get("watched"):
        seen = running_steps(repo)
    repo.run("dvc", "queue", "kill", "watched", check=False)
    repo.run("dvc", "queue", "stop", "--kill", check=False)
    assert seen.get("watched", 0) >= 1, "no epoch of the running experiment was shown"
