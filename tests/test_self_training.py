"""Self-training: the teacher stage trains a first model, train starts from it and adds the unlabelled
reviews it labels confidently."""
import numpy as np
import pytest

from project import make_repo, set_params

SELF_TRAINING = {"epochs": 4, "validation": 0.5, "patience": 10,
                 "self_training": {"use": True, "confidence": 0.6, "epochs": 2, "lr": 1e-9}}


def weights(path):
    with np.load(path) as npz:
        return [npz[str(i)] for i in range(len(npz.files))]


@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_train_starts_from_the_teacher_and_adds_the_unlabelled_reviews_it_is_sure_of(tmp_path, backend):
    repo = make_repo(tmp_path, backend=backend)
    set_params(repo.path / "params.yaml", SELF_TRAINING)
    repo.run("dvc", "repro", "train")
    teacher = repo.json("metrics/teacher.json")
    assert teacher["used"] is True and [row["epoch"] for row in teacher["log"]] == [1, 2, 3, 4]
    assert not (repo.path / "data/teacher/unused.txt").exists()

    # the student: the teacher's weights, 2 epochs at a rate too small to move them visibly
    for student, first in zip(weights(repo.path / "data/model/weights.npz"),
                              weights(repo.path / "data/teacher/weights.npz")):
        np.testing.assert_allclose(student, first, atol=1e-6)
    train = repo.json("metrics/train.json")
    assert train["epochs"] == train["epochs_run"] == 2
    # the same held-out reviews, and only those: the student's validation figures are the teacher's
    assert train["val_accuracy"] == teacher["val_accuracy"]
    assert train["val_loss"] == pytest.approx(teacher["val_loss"], abs=1e-4)

    # the unlabelled reviews the teacher gives at least 0.6, counted here with the teacher itself
    unlabelled = np.load(repo.path / "data/prepared/unsup_ids.npy")
    assert unlabelled.shape == (20, 24)  # the tiny archive's 20 unlabelled reviews, encoded as train's
    sure = confident_count(repo, unlabelled, 0.6)
    assert 0 < train["pseudo_labelled"] == sure < 20, "some reviews, not all: the threshold chose"


def confident_count(repo, unlabelled, confidence):
    import subprocess
    import sys
    script = ("import sys, numpy as np; from imdb_lstm import backend; backend.load(sys.argv[1], 'cpu', True); "
              "from imdb_lstm.model import load_model, predict_logits; "
              "from imdb_lstm.training import confident_labels; "
              "print(len(confident_labels(predict_logits(load_model('data/teacher'), "
              "np.load('data/prepared/unsup_ids.npy')), float(sys.argv[2]))[0]))")
    done = subprocess.run([sys.executable, "-c", script, repo.json("data/teacher/model.json")["trained_on"].split()[0],
                           str(confidence)], cwd=repo.path, env=repo.env, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def test_without_self_training_the_teacher_stage_loads_no_backend_and_prepare_adds_nothing(tmp_path):
    repo = make_repo(tmp_path)
    repo.run("dvc", "repro", "prepare")
    teacher = repo.run("dvc", "repro", "teacher")
    assert "Using PyTorch backend" not in teacher.stderr
    assert "teacher: skipped (self_training.use is false)" in teacher.stdout
    assert repo.json("metrics/teacher.json") == {"used": False}
    assert [p.name for p in (repo.path / "data/teacher").iterdir()] == ["unused.txt"]
    assert not (repo.path / "data/prepared/unsup_ids.npy").exists()


def test_a_teacher_of_another_model_is_refused(tmp_path):
    repo = make_repo(tmp_path)
    set_params(repo.path / "params.yaml", {**SELF_TRAINING, "epochs": 1})
    repo.run("dvc", "repro", "teacher")
    set_params(repo.path / "params.yaml", {"model": {"hidden_size": 8}})
    result = repo.run("python", "-m", "stages.train", check=False)  # alone, without the teacher's rerun first
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == ("error: the teacher in data/teacher is not this params.yaml's "
                                                      "model: run `dvc repro`")


def test_an_unknown_argument_is_one_error_line(tmp_path):
    repo = make_repo(tmp_path)
    result = repo.run("python", "-m", "stages.train", "teachr", check=False)
    assert result.returncode == 1
    assert result.stderr == ("error: unknown arguments 'teachr': `python -m stages.train` trains the model, "
                             "`python -m stages.train teacher` self-training's teacher\n")
