"""Resumable training: a killed train resumes after its last whole epoch and ends with the same bytes."""

import pytest
from conftest import BACKENDS, IN_PROCESS, require
from project import kill_stage_after, prepared_repo, run_here, set_params

# Held-out validation (early stopping's best weights in the checkpoint), dropout (the backend's RNG),
# adversarial and virtual adversarial training (steps of their own, the second drawing its unlabelled batches
# from each epoch's generator; not on mindspore, which params.py refuses them) and the weights' average.
RESUMABLE = {"epochs": 6, "validation": 0.5, "patience": 10, "adversarial": 0.05, "virtual_adversarial": 0.05,
             "weight_average": 0.9, "model": {"dropout": 0.3}}
OUTPUTS = ["data/model/weights.npz", "data/model/model.json", "data/model/train.json", "metrics/epochs/metrics.json",
           "metrics/epochs/plots/metrics/loss.tsv", "metrics/epochs/plots/metrics/val_loss.tsv"]


def outputs(repo, names=OUTPUTS):
    return {name: (repo.path / name).read_bytes() for name in names}


def kill_after_epoch(repo, epoch):
    """Start train alone and SIGKILL it once it has logged `epoch` whole epochs: no handler runs."""
    kill_stage_after(repo, "train", f"epoch {epoch}/")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_training_resumes_and_ends_with_an_uninterrupted_runs_bytes(tmp_path, backend):
    require(backend)
    repo = prepared_repo(tmp_path, backend=backend)
    # tensorflow's dropout generator cannot be saved (next test): its run resumes without dropout
    set_params(repo.path / "params.yaml", {**RESUMABLE, "model": {"dropout": 0.0}} if backend == "tensorflow"
               else {**RESUMABLE, "adversarial": 0.0, "virtual_adversarial": 0.0} if backend == "mindspore"
               else RESUMABLE)
    repo.run("dvc", "repro", "pretrain")
    kill_after_epoch(repo, 2)
    assert (repo.path / ".checkpoints/train/state.json").exists()
    resumed = repo.run("dvc", "repro", "train")
    assert "resuming after epoch 2" in resumed.stderr and "epoch 1/" not in resumed.stderr
    assert (repo.path / ".checkpoints/train/state.json").exists(), "a finished run keeps its last checkpoint"
    after_resume = outputs(repo)
    uninterrupted = repo.run("python", "-m", "stages.train")  # as long as the checkpoint's run: starts over
    assert "resuming" not in uninterrupted.stderr
    assert outputs(repo) == after_resume


def train_here(repo, capsys):
    """Run train in this process (project.run_here); returns what it logged."""
    capsys.readouterr()
    run_here(repo, "train")
    return capsys.readouterr().err


def test_a_killed_run_without_validation_resumes_as_the_embedding_thaws_and_other_params_start_over(
        tlx, tmp_path, capsys):
    """No validation: the checkpoint has no best weights, and its other groups must not shift into their
    slots. Killed at the last frozen epoch: epoch 3 tunes everything, with a fresh optimizer. (The kill needs
    a process of its own; the runs after it need none.)"""
    repo = prepared_repo(tmp_path)
    set_params(repo.path / "params.yaml", {"epochs": 4, "pretrain": {"use": True, "frozen_epochs": 2},
                                           "backend": IN_PROCESS})
    run_here(repo, "pretrain")
    kill_after_epoch(repo, 2)
    assert "resuming after epoch 2" in train_here(repo, capsys)
    without_validation = OUTPUTS[:-1]
    after_resume = outputs(repo, without_validation)
    assert "resuming" not in train_here(repo, capsys), "a run as long as the checkpoint's starts over"
    assert outputs(repo, without_validation) == after_resume
    # the finished run's checkpoint was made for lr 0.01: a longer run of lr 0.02 starts over
    set_params(repo.path / "params.yaml", {"lr": 0.02, "epochs": 5})
    other = train_here(repo, capsys)
    assert "resuming" not in other and "epoch 1/5" in other


def test_a_longer_run_goes_on_from_a_finished_ones_last_epoch_and_a_shorter_one_starts_over(
        tlx, tmp_path, capsys):
    repo = prepared_repo(tmp_path)
    set_params(repo.path / "params.yaml", {**RESUMABLE, "epochs": 2, "backend": IN_PROCESS})
    train_here(repo, capsys)
    two_epochs = outputs(repo)
    set_params(repo.path / "params.yaml", {"epochs": 3})  # as `dvc exp run -S epochs=3` sets it
    longer = train_here(repo, capsys)
    assert "resuming after epoch 2" in longer and "epoch 1/" not in longer
    extended = outputs(repo)
    straight = train_here(repo, capsys)  # as long as the checkpoint's run (`dvc repro --force`): starts over
    assert "resuming" not in straight and "epoch 1/3" in straight
    assert outputs(repo) == extended
    set_params(repo.path / "params.yaml", {"epochs": 2})
    shorter = train_here(repo, capsys)
    assert "resuming" not in shorter and "epoch 1/2" in shorter
    assert outputs(repo) == two_epochs


def test_a_run_that_stops_early_removes_its_checkpoint(tlx, tmp_path):
    """A longer run would stop at the same epoch: nothing to go on from."""
    repo = prepared_repo(tmp_path)
    set_params(repo.path / "params.yaml", {"validation": 0.5, "patience": 2, "epochs": 25, "backend": IN_PROCESS})
    run_here(repo, "train")
    assert repo.json("data/model/train.json")["epochs_run"] < 25, "the tiny data overfits: early stopping ends the run"
    assert not (repo.path / ".checkpoints/train").exists()


@pytest.mark.parametrize("dropout", ["dropout", "embedding_dropout"])
def test_on_tensorflow_a_model_with_dropout_keeps_no_checkpoint_and_says_so(tmp_path, dropout):
    """A finished run keeps its last checkpoint (above), but not this one: a resumed run would differ."""
    require("tensorflow")
    repo = prepared_repo(tmp_path, backend="tensorflow")
    set_params(repo.path / "params.yaml", {**RESUMABLE, "epochs": 2, "model": {dropout: 0.3}})
    run = repo.run("python", "-m", "stages.train")
    assert "no checkpoints: tensorflow cannot save dropout's random generator" in run.stderr
    assert not (repo.path / ".checkpoints/train").exists()
