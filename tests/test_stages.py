"""Stages that meet bad data or are stopped: a clear error, a non-zero exit, nothing half-written."""
import signal
import subprocess
import sys

import numpy as np
import pytest

from imdb_fixture import member_info, write_archive
from project import make_repo, set_params


def reviews_archive(path, reviews):
    """An archive holding {member path under aclImdb/: text} reviews."""
    members = [(member_info(f"aclImdb/{name}", size=len(text.encode())), text.encode())
               for name, text in sorted(reviews.items())]
    write_archive(path, members)


def run_stage(repo, stage, *python_args):
    return subprocess.run([sys.executable, *python_args, "-m", f"stages.{stage}"], cwd=repo.path,
                          env=repo.env, capture_output=True, text=True, timeout=600)


def leftovers(repo, *inputs):
    """Files under data/ and metrics/, but the stage's `inputs` folders in data/: a failed stage leaves none."""
    files = [p for folder in ("data", "metrics") for p in (repo.path / folder).rglob("*") if p.is_file()]
    return sorted(str(p.relative_to(repo.path)) for p in files
                  if p.name != ".gitignore" and not set(p.parts) & {"raw", *inputs})


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path)


def test_prepare_refuses_a_split_with_one_class(repo):
    (repo.path / "data/raw").mkdir(parents=True)
    reviews_archive(repo.path / "data/raw/aclImdb_v1.tar.gz", {
        "train/pos/0_9.txt": "good", "train/pos/1_8.txt": "fine",
        "test/pos/0_9.txt": "good", "test/neg/0_1.txt": "bad"})
    result = run_stage(repo, "prepare")
    assert result.returncode == 1
    assert "error: data/raw/aclImdb_v1.tar.gz: the train split needs positive and negative reviews, found [1]" \
        in result.stderr
    assert leftovers(repo) == []


def test_prepare_builds_the_vocabulary_from_the_training_split_only(repo):
    (repo.path / "data/raw").mkdir(parents=True)
    reviews_archive(repo.path / "data/raw/aclImdb_v1.tar.gz", {
        "train/pos/0_9.txt": "good good film", "train/neg/0_1.txt": "bad film",
        "test/pos/0_9.txt": "testonlyword good", "test/neg/0_1.txt": "bad"})
    assert run_stage(repo, "prepare").returncode == 0
    words = (repo.path / "data/prepared/vocab.json").read_text()
    assert "testonlyword" not in words and "good" in words
    test_ids = np.load(repo.path / "data/prepared/test_ids.npy")
    assert 1 in test_ids  # the test-only word is out of vocabulary


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_training_leaves_no_model_or_metrics_and_the_next_repro_runs(repo, signum):
    repo.run("dvc", "repro", "prepare")
    set_params(repo.path / "params.yaml", {"epochs": 1000})
    train = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=repo.path, env=repo.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "epoch 3/" not in seen:  # stopped mid-run, after whole epochs were trained
        seen += train.stderr.read(1) or pytest.fail(f"train ended early:\n{seen}")
    train.send_signal(signum)
    stderr = train.stderr.read()
    assert train.wait(timeout=60) != 0
    assert "interrupted: no outputs were written" in stderr
    assert leftovers(repo, "prepared") == []
    set_params(repo.path / "params.yaml", {"epochs": 2})
    assert "Running stage 'train'" in repo.run("dvc", "repro").stdout


def test_a_loss_that_becomes_nan_stops_training_with_a_clear_error(repo):
    repo.run("dvc", "repro", "prepare")
    diverge = (
        "import stages.train as train\n"
        "loss = train.CountingLoss.__call__\n"
        "train.CountingLoss.__call__ = lambda self, logits, labels: loss(self, logits, labels) * float('nan')\n"
        "train.run_stage(train.main)\n"
    )
    result = subprocess.run([sys.executable, "-c", diverge], cwd=repo.path, env=repo.env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert "error: the training loss became nan: lower `lr` in params.yaml" in result.stderr
    assert leftovers(repo, "prepared") == []


def test_early_stopping_holds_out_part_of_train_and_keeps_the_best_epoch(repo):
    set_params(repo.path / "params.yaml", {"validation": 0.2, "patience": 2, "epochs": 25})
    repo.run("dvc", "repro", "train")
    train = repo.json("metrics/train.json")
    header, *rows = [line.split(",") for line in (repo.path / "metrics/train_log.csv").read_text().splitlines()]
    assert header == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert train["epochs_run"] == len(rows) <= 25
    val_losses = [float(row[3]) for row in rows]
    assert train["val_loss"] == min(val_losses)
    assert train["best_epoch"] == 1 + val_losses.index(min(val_losses))
    if len(rows) < 25:  # stopped early: `patience` epochs without a better validation loss
        assert len(rows) - train["best_epoch"] == 2
