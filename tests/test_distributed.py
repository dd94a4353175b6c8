"""Training in several processes under torchrun (imdb_lstm/distributed.py): the one-process model to rounding,
one error line for a lost process, a checkpoint to go on from, and `dvc exp run -S distributed.processes=2`."""
import os
import signal
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


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """(a repository whose train ran in 2 processes with TINY params, its model's weights)."""
    repo = prepared_repo(tmp_path_factory.mktemp("two"))
    run(repo, "train", 2)
    return repo, weights(repo.path / "data/model/weights.npz")


def test_train_in_two_processes_gives_the_one_process_model(two_processes, tmp_path):
    repo, two = two_processes
    one = prepared_repo(tmp_path)
    run(one, "train", 1)
    assert_close(weights(one.path / "data/model/weights.npz"), two)
    # and not by chance: the model moved well past the tolerance from where it started
    assert max(np.abs(w).max() for w in two) > 0.5
    one_figures, two_figures = one.json("metrics/train.json"), repo.json("metrics/train.json")
    assert abs(one_figures.pop("loss") - two_figures.pop("loss")) < TOLERANCE
    assert one_figures == two_figures  # the accuracy counted over both processes' reviews


def test_the_lm_in_two_processes_gives_the_one_process_lm(tmp_path):
    repos = {}
    for processes in (1, 2):
        repo = repos[processes] = prepared_repo(tmp_path / str(processes))
        set_params(repo.path / "params.yaml", LM)
        run(repo, "lm", processes)
    assert_close(*(weights(repos[p].path / "data/lm/weights.npz") for p in (1, 2)))
    assert abs(repos[1].json("metrics/lm.json")["perplexity"] - repos[2].json("metrics/lm.json")["perplexity"]) < 1e-3


def test_a_killed_process_ends_the_run_with_one_error_line_and_the_run_goes_on_from_its_checkpoint(
        two_processes, tmp_path):
    repo = prepared_repo(tmp_path)
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
    errors = [line for line in logged.splitlines() if line.startswith("error:")]
    assert errors == ["error: process 1 of 2 was killed (SIGKILL); the others were stopped: rerun to go on from "
                      "the last checkpoint"]
    assert not (repo.path / "data/model").exists() and not (repo.path / "metrics/train.json").exists()
    assert (repo.path / ".checkpoints/train/state.json").is_file()
    resumed = run(repo, "train", 2)
    assert "train: resuming after epoch" in resumed.stderr
    _, uninterrupted = two_processes
    for a, b in zip(weights(repo.path / "data/model/weights.npz"), uninterrupted, strict=True):
        assert a.tobytes() == b.tobytes()


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


def test_dvc_exp_run_trains_the_pipeline_in_two_processes(tmp_path):
    repo = prepared_repo(tmp_path)
    repo.run("dvc", "exp", "run", "-S", "distributed.processes=2", "-n", "two")
    shown = repo.run("dvc", "exp", "show", "--csv", "--hide-workspace").stdout.splitlines()
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
    said = _failure(3, 4, ProcessFailure(local_rank=1, pid=1, exitcode=1, error_file=""), tmp_path)
    assert said == "process 3 of 4: the training loss became nan: lower lr in params.yaml"
    said = _failure(1, 2, ProcessFailure(local_rank=1, pid=1, exitcode=130, error_file=""), tmp_path)
    assert said.startswith("process 1 of 2 was interrupted")
    said = _failure(1, 2, ProcessFailure(local_rank=2, pid=1, exitcode=3, error_file=""), tmp_path)
    assert said == "process 1 of 2 ended with exit status 3; the others were stopped"
