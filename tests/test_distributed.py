"""Training in several processes under torchrun (imdb_lstm/distributed.py): the one-process model to rounding,
one error line for a lost process, a checkpoint to go on from, and `dvc exp run -S distributed.processes=2`."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from project import prepared_repo, set_params
from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

from imdb_lstm.distributed import Group, _failure
from imdb_lstm.errors import PipelineError

# Rounding apart (a sum of two parts' means, an LSTM kernel on fewer rows), the same steps: 10 epochs of train at
# lr 0.001 end within 7.5e-6 of one process's weights (2-core AMD EPYC). At TINY's lr 0.01 Adam magnifies the
# rounding of gradients near zero (it divides each by its own size, down to its eps of 1e-8): 0.3 apart.
TOLERANCE = 1e-4
# Batches of 9 reviews, or 5 lanes of the LM's stream: the two processes' parts differ in size.
UNEVEN = {"batch_size": 9, "lr": 0.001}
LM = {"lm": {"use": True, "output_words": 20, "steps": 8, "epochs": 1, "batch_size": 5, "carry_state": True}}


def run(repo, stage, processes):
    set_params(repo.path / "params.yaml", {**UNEVEN, "distributed": {"processes": processes}})
    return repo.run(sys.executable, "-m", f"stages.{stage}")


def weights(path):
    with np.load(path) as npz:
        return [npz[name] for name in npz.files]


def assert_close(one, other):
    assert len(one) == len(other)
    for a, b in zip(one, other):
        np.testing.assert_allclose(b, a, rtol=0, atol=TOLERANCE)


def test_the_lm_in_two_processes_gives_the_one_process_lm(tmp_path):
    repos = {}
    for processes in (1, 2):
        repo = repos[processes] = prepared_repo(tmp_path / str(processes))
        set_params(repo.path / "params.yaml", LM)
        run(repo, "lm", processes)
    assert_close(*(weights(repos[p].path / "data/lm/weights.npz") for p in (1, 2)))
    assert abs(repos[1].json("metrics/lm.json")["perplexity"] - repos[2].json("metrics/lm.json")["perplexity"]) < 1e-3


def test_a_killed_process_ends_the_run_with_one_error_line_and_the_run_goes_on_from_its_checkpoint(tmp_path):
    """With dropout, whose generators (one per process) the checkpoint keeps: the bytes of an uninterrupted run."""
    uninterrupted, repo = (prepared_repo(tmp_path / name) for name in ("uninterrupted", "killed"))
    for each in (uninterrupted, repo):
        set_params(each.path / "params.yaml", {"model": {"dropout": 0.3}})
    run(uninterrupted, "train", 2)
    set_params(repo.path / "params.yaml", {**UNEVEN, "distributed": {"processes": 2}})
    launcher = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=repo.path, env=repo.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logged = ""
    for line in launcher.stderr:
        logged += line
        if line.startswith("epoch 2/"):
            kill_process(launcher.pid, local_rank=1)
            break
    logged += launcher.stderr.read()
    assert launcher.wait(timeout=120) == 1
    assert errors(logged) == ["error: process 1 of 2 was killed (SIGKILL); the others were stopped: rerun to go on "
                              "from the last checkpoint"]
    assert not (repo.path / "data/model").exists()
    assert (repo.path / ".checkpoints/train/state.json").is_file()
    resumed = run(repo, "train", 2)
    assert "train: resuming after epoch" in resumed.stderr
    for a, b in zip(*(weights(each.path / "data/model/weights.npz") for each in (repo, uninterrupted)), strict=True):
        assert a.tobytes() == b.tobytes()


def errors(logged):
    return [line for line in logged.splitlines() if line.startswith("error:")]


def test_two_machines_go_on_from_the_checkpoint_of_process_0s_machine(tmp_path):
    """Two "machines" (folders, a process each) joined by torchrun's settings. The second's process is killed:
    each machine says what it saw in one line; the rerun goes on, on the second machine too, from the first's
    checkpoint (the second has none); the second writes nothing."""
    first, second = (prepared_repo(tmp_path / name) for name in ("first", "second"))
    for repo in (first, second):
        set_params(repo.path / "params.yaml", UNEVEN)
    runs = start_machines([first, second])
    for line in runs[0].stderr:
        if line.startswith("epoch 2/"):
            kill_process(runs[1].pid, local_rank=0)
            break
    said = finish(runs)
    assert [run.returncode for run in runs] == [1, 1], said
    assert errors(said[0]) == ["error: process 0 lost another process of the run, on another machine (its log there "
                               "says why): rerun to go on from the last checkpoint"]
    assert errors(said[1]) == ["error: process 1 was killed (SIGKILL); the others were stopped: rerun to go on from "
                               "the last checkpoint"]
    assert (first.path / ".checkpoints/train/state.json").is_file() and not (second.path / ".checkpoints").exists()
    runs = start_machines([first, second])
    said = finish(runs)
    assert [run.returncode for run in runs] == [0, 0], said
    assert "train: resuming after epoch" in said[1]
    assert (first.path / "data/model/weights.npz").is_file() and not (second.path / "data/model").exists()


def start_machines(repos):
    """`python -m stages.train` in each repo, as the machine of that rank in a run across len(repos) machines."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    machines = {"PET_NNODES": str(len(repos)), "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port)}
    return [subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=repo.path, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**repo.env, **machines, "PET_NODE_RANK": str(rank)})
            for rank, repo in enumerate(repos)]


def finish(runs):
    """What each run said on stderr (from where it was read to), once all have ended."""
    try:
        return [run.communicate(timeout=120)[1] for run in runs]
    finally:  # a run that waits for the other forever (gloo's own limit is 30 minutes)
        for run in runs:
            run.kill()


def kill_process(launcher, local_rank):
    """SIGKILL the process of `local_rank` that torchrun started under the process `launcher`."""
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
            parents = _parents(int(environ.parent.name))
        except OSError:
            continue
        if f"LOCAL_RANK={local_rank}".encode() in variables and launcher in parents:
            os.kill(int(environ.parent.name), signal.SIGKILL)
            return
    pytest.fail(f"no process of local rank {local_rank} under {launcher}")


def _parents(pid):
    chain = []
    while pid > 1:
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


def test_dvc_exp_run_trains_the_pipeline_in_two_processes_to_the_one_process_model(tmp_path):
    one, two = (prepared_repo(tmp_path / str(processes)) for processes in (1, 2))
    run(one, "train", 1)
    set_params(two.path / "params.yaml", UNEVEN)
    two.run("dvc", "exp", "run", "-S", "distributed.processes=2", "-n", "two")
    assert_close(*(weights(repo.path / "data/model/weights.npz") for repo in (one, two)))
    # and not by chance: the model moved well past the tolerance from where it started
    assert max(np.abs(w).max() for w in weights(two.path / "data/model/weights.npz")) > 0.5
    one_figures, two_figures = one.json("data/model/train.json"), two.json("data/model/train.json")
    assert abs(one_figures.pop("loss") - two_figures.pop("loss")) < TOLERANCE
    assert one_figures == two_figures  # the accuracy counted over both processes' reviews
    shown = two.run("dvc", "exp", "show", "--csv", "--hide-workspace").stdout.splitlines()
    header, *rows = [line.split(",") for line in shown]
    row = next(row for row in rows if "two" in row)
    assert row[header.index("distributed.processes")] == "2"
    assert 0 <= float(row[header.index("metrics/eval.json:accuracy")]) <= 1


def test_each_process_takes_its_run_of_every_batch():
    rows = np.arange(7)
    parts = [Group(rank, 3).part(rows) for rank in range(3)]
    assert [part.tolist() for part in parts] == [[0, 1, 2], [3, 4], [5, 6]]
    assert Group(0, 1).main and not Group(1, 2).main
    with pytest.raises(PipelineError, match="a batch of 2 rows cannot be shared by 3 processes"):
        Group(2, 3).part(rows[:2])


def test_a_failed_process_is_named_with_its_own_error_line(tmp_path):
    log = tmp_path / "run" / "attempt_0" / "1" / "stderr.log"
    log.parent.mkdir(parents=True)
    log.write_text("Using PyTorch backend.\nerror: the training loss became nan: lower lr in params.yaml\n")
    said = _failure("process 3 of 4", ProcessFailure(local_rank=1, pid=1, exitcode=1, error_file=""), tmp_path)
    assert said == "process 3 of 4: the training loss became nan: lower lr in params.yaml"
    said = _failure("process 1", ProcessFailure(local_rank=1, pid=1, exitcode=130, error_file=""), tmp_path)
    assert said.startswith("process 1 was interrupted")
    said = _failure("process 1", ProcessFailure(local_rank=2, pid=1, exitcode=3, error_file=""), tmp_path)
    assert said == "process 1 ended with exit status 3; the others were stopped"
