"""End to end: the real `dvc repro` in a fresh git repo, on a tiny archive in the real IMDB layout."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from project import epochs, make_repo


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """trained(backend): a repository after its first `dvc repro` on `backend`, made once in this module."""
    repos = {}

    def get(backend):
        if backend not in repos:
            repo = repos[backend] = make_repo(tmp_path_factory.mktemp(backend), backend)
            repo.backend = backend
            repo.first_run = repo.run("dvc", "repro")
        return repos[backend]
    return get


@pytest.fixture
def repo(trained):
    """The torch repository: what does not depend on the backend is tested once."""
    return trained("torch")


@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_repro_writes_every_output(trained, backend):
    repo = trained(backend)
    prepared = repo.path / "data/prepared"
    for split in ("train", "test"):
        ids, labels = np.load(prepared / f"{split}_ids.npy"), np.load(prepared / f"{split}_labels.npy")
        assert ids.shape == (200, 24) and ids.dtype == np.int64
        assert labels.shape == (200,) and labels.dtype == np.int64 and set(labels) == {0, 1}
    assert len(json.loads((prepared / "vocab.json").read_text())["words"]) <= 52
    assert (repo.path / "data/model/weights.npz").exists()
    train, evaluation = repo.json("data/model/train.json"), repo.json("metrics/eval.json")
    assert train["epochs"] == 10 and train["backend"].startswith(repo.backend)
    assert evaluation["reviews"] == 200
    assert evaluation["accuracy"] > 0.75, "the fixture's labels are learnable"
    assert set(evaluation) >= {"accuracy", "precision", "recall", "f1", "roc_auc", "loss"}
    figures, steps = epochs(repo.path)
    assert steps == list(range(1, 11)) and sorted(figures) == ["accuracy", "loss"]
    assert json.loads((repo.path / "metrics/epochs/metrics.json").read_text()) == {
        "step": 10, "loss": figures["loss"][-1], "accuracy": figures["accuracy"][-1]}
    for stage in ("fetch", "prepare", "train", "evaluate", "baseline", "report"):
        assert f"Running stage '{stage}'" in repo.first_run.stdout
    assert repo.json("metrics/baseline.json")["accuracy"] > 0.75
    shown = json.loads(repo.run("dvc", "metrics", "show", "--json").stdout)[""]["data"]
    assert {name: [key for key, value in figures["data"].items() if type(value) not in (int, float)]
            for name, figures in shown.items()} == dict.fromkeys(shown, []), "metrics hold numbers only"
    assert set(shown) == {"metrics/eval.json", "metrics/baseline.json", "metrics/lm.json",
                          "metrics/epochs/metrics.json"}
    for image in ("training", "confusion", "roc"):
        assert (repo.path / f"metrics/plots/{image}.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("trained_on, predict_on", [("torch", None), ("paddle", None), ("torch", "paddle"),
                                                     ("paddle", "torch")])
def test_predict_classifies_new_reviews_with_a_model_from_either_backend(trained, trained_on, predict_on):
    """On the backend that trained the model unless --backend names another."""
    repo = trained(trained_on)
    reviews = "A wonderful, superb and moving film.\nDull, boring and predictable.\n"
    # the command `pip install` gives (pyproject.toml), or the module
    command = [str(Path(sys.executable).parent / "imdb-predict")] if predict_on is None else \
        ["python", "-m", "imdb_lstm.predict", "--backend", predict_on]
    result = repo.run(*command, "--json", input=reviews)
    assert f"Using {'PyTorch' if (predict_on or trained_on) == 'torch' else 'Paddle'} backend." in result.stderr
    predictions = json.loads(result.stdout)
    assert [p["label"] for p in predictions] == ["positive", "negative"]
    assert all(p["probability"] > 0.6 for p in predictions), "clear reviews get confident labels"


def test_predict_errors_are_one_clear_line(repo):
    empty = repo.run("python", "-m", "imdb_lstm.predict", check=False)
    assert empty.returncode == 1 and "error: no review to classify" in empty.stderr
    untrained = repo.run("python", "-m", "imdb_lstm.predict", "--model", "nowhere", "good film", check=False)
    assert untrained.returncode == 1 and "error: no trained model in nowhere" in untrained.stderr


@pytest.mark.parametrize("where", ["stdin", "argument"])
def test_predict_reads_bytes_that_are_not_utf8_under_a_strict_locale(repo, where):
    review = b"superb and brilliant \xff\xfe caf\xe9"
    strict = {"PYTHONIOENCODING": "utf-8", "LC_ALL": "C", "PYTHONUTF8": "0"}
    if where == "stdin":
        result = subprocess.run([sys.executable, "-m", "imdb_lstm.predict"], input=review, cwd=repo.path,
                                env={**repo.env, **strict}, capture_output=True, timeout=300)
    else:
        result = subprocess.run([sys.executable.encode(), b"-m", b"imdb_lstm.predict", review], cwd=repo.path,
                                env={**repo.env, **strict}, capture_output=True, timeout=300)
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr
    assert result.stdout.startswith(b"positive ") and "\ufffd".encode() in result.stdout


def test_dvc_plots_show_draws_every_chart_once(repo):
    """report's PNGs (README's) draw the same figures as these: dvc.yaml leaves them out."""
    shown = json.loads(repo.run("dvc", "plots", "show", "--json").stdout)
    assert "errors" not in shown
    assert {name: [plot["type"] for plot in plots] for name, plots in shown["data"].items()} == {
        "metrics/epochs/plots/metrics/loss.tsv": ["vega"], "metrics/epochs/plots/metrics/accuracy.tsv": ["vega"],
        "metrics/confusion.csv": ["vega"], "metrics/roc.csv": ["vega"]}
    assert [shown["data"][f"metrics/{name}.csv"][0]["content"]["title"]["text"] for name in ("confusion", "roc")] == [
        "Confusion matrix on the test split", "ROC curve on the test split"]
    assert sorted(path.name for path in (repo.path / "metrics/plots").iterdir()) == [
        "confusion.png", "roc.png", "training.png"]


def test_second_repro_runs_nothing(repo):
    again = repo.run("dvc", "repro")
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout


def test_a_forced_rerun_reproduces_every_output_byte_for_byte(trained):
    """On the default backend; test_reproducible reruns train and evaluate on every backend."""
    repo = trained("torch")
    repo.commit("tiny run")
    rerun = repo.run("dvc", "repro", "--force", TQDM_DISABLE="1")
    assert repo.run("git", "status", "--porcelain").stdout == "", "dvc.lock or metrics changed"
    assert "\r" not in rerun.stderr and len(rerun.stderr) < 20_000, "no bar redraws in a log"
    assert "epoch 10/10: loss" in rerun.stderr, "a line per epoch instead"
    for stage in ("fetch", "prepare", "train", "evaluate", "baseline", "report"):
        assert f"\n{stage}: " in rerun.stdout, "each stage still prints its summary line"


def test_an_edit_of_the_model_code_makes_train_stale(repo):
    model = repo.path / "imdb_lstm/model.py"
    model.write_text(model.read_text() + "# an edit\n")
    status = json.loads(repo.run("dvc", "status", "--json").stdout)
    repo.run("git", "checkout", "imdb_lstm/model.py")
    assert set(status) == {"train", "evaluate"}


def test_experiment_reruns_only_train_and_evaluate_and_metrics_diff_shows_it(repo):
    experiment = repo.run("dvc", "exp", "run", "-S", "epochs=12")
    stages = ("fetch", "prepare", "train", "evaluate", "baseline", "report")
    ran = {stage for stage in stages if f"Running stage '{stage}'" in experiment.stdout}
    assert ran == {"train", "evaluate", "report"}
    diff = json.loads(repo.run("dvc", "metrics", "diff", "--json").stdout)
    assert diff["metrics/epochs/metrics.json"]["step"] == {"old": 10, "new": 12, "diff": 2}
    plots = json.loads(repo.run("dvc", "plots", "diff", "HEAD", "--json").stdout)["data"]
    assert set(plots["metrics/epochs/plots/metrics/loss.tsv"][0]["revisions"]) == {"HEAD", "workspace"}
