"""Stages that meet bad data or are stopped: a clear error, a non-zero exit, nothing half-written."""
import functools
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import IN_PROCESS
from imdb_fixture import member_info, write_archive
from project import epochs, make_repo, prepared_repo, run_here, set_params

from imdb_lstm.errors import PipelineError


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
    return prepared_repo(tmp_path)


@pytest.fixture
def here(tlx, tmp_path):
    """A prepared repository whose stages the test runs in this process (project.run_here)."""
    repo = prepared_repo(tmp_path)
    set_params(repo.path / "params.yaml", {"backend": IN_PROCESS})
    return repo


def test_prepare_refuses_a_split_with_one_class(tmp_path):
    repo = make_repo(tmp_path)
    (repo.path / "data/raw").mkdir(parents=True)
    reviews_archive(repo.path / "data/raw/aclImdb_v1.tar.gz", {
        "train/pos/0_9.txt": "good", "train/pos/1_8.txt": "fine",
        "test/pos/0_9.txt": "good", "test/neg/0_1.txt": "bad"})
    result = run_stage(repo, "prepare")
    assert result.returncode == 1
    assert "error: data/raw/aclImdb_v1.tar.gz: the train split needs positive and negative reviews, found [1]" \
        in result.stderr
    assert leftovers(repo) == []


def test_prepare_builds_the_vocabulary_from_the_training_split_only(tmp_path):
    repo = make_repo(tmp_path)
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
def test_a_stopped_training_leaves_no_model_or_metrics_and_the_next_run_trains(here, signum):
    repo = here
    set_params(repo.path / "params.yaml", {"epochs": 1000})
    # as from a terminal: a shell that starts jobs in the background makes them ignore SIGINT
    train = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=repo.path, env=repo.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    while "epoch 3/" not in seen:  # stopped mid-run, after whole epochs were trained
        seen += train.stderr.read(1) or pytest.fail(f"train ended early:\n{seen}")
    train.send_signal(signum)
    stderr = train.stderr.read()
    assert train.wait(timeout=60) == 130
    assert "interrupted: no outputs were written" in stderr
    assert leftovers(repo, "tokens", "prepared") == []
    set_params(repo.path / "params.yaml", {"epochs": 2})
    run_here(repo, "train")
    assert repo.json("data/model/train.json")["epochs_run"] == 2


def test_a_loss_that_becomes_nan_stops_training_with_a_clear_error(here, monkeypatch):
    from imdb_lstm.training import CountingLoss
    loss = CountingLoss.__call__
    monkeypatch.setattr(CountingLoss, "__call__", lambda self, logits, labels: loss(self, logits, labels) * np.nan)
    with pytest.raises(PipelineError, match="^the training loss became nan: lower `lr` in params.yaml"):
        run_here(here, "train")
    assert leftovers(here, "tokens", "prepared") == []


def test_early_stopping_holds_out_part_of_train_and_keeps_the_best_epoch(here):
    repo = here
    set_params(repo.path / "params.yaml", {"validation": 0.5, "patience": 2, "epochs": 25})
    run_here(repo, "train")
    train = repo.json("data/model/train.json")
    figures, steps = epochs(repo.path)
    assert sorted(figures) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert train["epochs_run"] == len(steps) <= 25 and steps == list(range(1, len(steps) + 1))
    val_losses = figures["val_loss"]
    assert train["val_loss"] == min(val_losses)
    assert train["best_epoch"] == 1 + val_losses.index(min(val_losses))
    assert len(steps) < 25, "the tiny data overfits, so early stopping ends the run"
    assert len(steps) - train["best_epoch"] == 2  # `patience` epochs without a better validation loss
    kept = train["best_epoch"] - 1
    assert (train["loss"], train["accuracy"]) == (figures["loss"][kept], figures["accuracy"][kept]), "the kept epoch's"
    # The saved weights are the best epoch's: a run that ends at that epoch (training is deterministic) has them.
    with np.load(repo.path / "data/model/weights.npz") as saved:
        early_stopped = [saved[name] for name in sorted(saved.files, key=int)]
    set_params(repo.path / "params.yaml", {"epochs": train["best_epoch"], "patience": 100})
    run_here(repo, "train")
    with np.load(repo.path / "data/model/weights.npz") as saved:
        at_best_epoch = [saved[name] for name in sorted(saved.files, key=int)]
    assert all((a == b).all() for a, b in zip(early_stopped, at_best_epoch))


def test_batches_by_length_hold_every_review_once_with_little_padding():
    from imdb_lstm.training import batch_order
    lengths = np.random.default_rng(1).integers(1, 800, 10_000)
    by_length = batch_order(lengths, 64, np.random.default_rng(0), by_length=True)
    shuffled = batch_order(lengths, 64, np.random.default_rng(0), by_length=False)
    for batches in (by_length, shuffled):
        assert sorted(np.concatenate(batches).tolist()) == list(range(10_000))
        assert max(len(batch) for batch in batches) == 64
    padded_steps = [sum(len(batch) * lengths[batch].max() for batch in batches) for batches in (by_length, shuffled)]
    assert padded_steps[0] < 0.6 * padded_steps[1]
    again = batch_order(lengths, 64, np.random.default_rng(0), by_length=True)
    assert [b.tolist() for b in again] == [b.tolist() for b in by_length]


def test_trim_padding_trains_and_evaluates_and_the_model_remembers_it(here):
    repo = here
    set_params(repo.path / "params.yaml", {"model": {"trim_padding": True, "pooling": "masked_mean_max"}})
    run_here(repo, "train")
    run_here(repo, "evaluate")
    assert repo.json("data/model/model.json")["trim_padding"] is True
    assert repo.json("metrics/eval.json")["accuracy"] > 0.75


def test_pretrain_learns_vectors_from_train_and_unlabelled_reviews_only(here):
    repo = here
    from imdb_fixture import NEGATIVE, POSITIVE

    from imdb_lstm.archive import iter_reviews, pretraining_texts

    archive = repo.path.parent / "cache" / "aclImdb_v1.tar.gz"
    reviews = list(iter_reviews(archive, include_unsup=True))
    assert sorted(pretraining_texts(archive)) == sorted(r.text for r in reviews if r.split == "train")
    assert len(pretraining_texts(archive)) > sum(r.split == "train" and r.label >= 0 for r in reviews)

    set_params(repo.path / "params.yaml", {"pretrain": {"use": True}})
    run_here(repo, "pretrain")
    words = repo.json("data/prepared/vocab.json")["words"]
    vectors = np.load(repo.path / "data/pretrained/vectors.npy")
    assert vectors.shape == (len(words), 16) and vectors.dtype == np.float32
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-9)
    ids = {word: i for i, word in enumerate(words)}
    positive, negative = ([ids[w] for w in group if w in ids] for group in (POSITIVE, NEGATIVE))
    similarity = unit @ unit.T
    same = np.mean([similarity[a, b] for group in (positive, negative) for a in group for b in group if a != b])
    across = np.mean([similarity[a, b] for a in positive for b in negative])
    assert same > across + 0.1, "words of one sentiment share contexts, so their vectors are closer"


def test_virtual_adversarial_training_reads_the_unlabelled_reviews_only_and_changes_the_model(here, capsys):
    repo = here
    set_params(repo.path / "params.yaml", {"epochs": 1})
    run_here(repo, "train")
    plain = (repo.path / "data/model/weights.npz").read_bytes()
    set_params(repo.path / "params.yaml", {"virtual_adversarial": 0.05})
    capsys.readouterr()
    run_here(repo, "train")
    assert "virtual adversarial training: 20 unlabelled reviews" in capsys.readouterr().err
    assert (repo.path / "data/model/weights.npz").read_bytes() != plain


def test_the_weight_average_changes_what_train_saves_and_validates_not_how_it_trains(here, capsys):
    repo = here
    set_params(repo.path / "params.yaml", {"epochs": 2, "validation": 0.5})
    plots = repo.path / "metrics/epochs/plots/metrics"

    def figures():
        return {name: (plots / f"{name}.tsv").read_text() for name in ("loss", "accuracy", "val_loss")}

    run_here(repo, "train")
    plain, plain_weights = figures(), (repo.path / "data/model/weights.npz").read_bytes()
    set_params(repo.path / "params.yaml", {"weight_average": 0.9})
    capsys.readouterr()
    run_here(repo, "train")
    averaged = figures()
    assert [averaged[k] for k in ("loss", "accuracy")] == [plain[k] for k in ("loss", "accuracy")], \
        "each epoch's training figures are the same: the average only watches the steps"
    assert averaged["val_loss"] != plain["val_loss"]
    assert (repo.path / "data/model/weights.npz").read_bytes() != plain_weights
    last_val_loss = float(plain["val_loss"].splitlines()[-1].split("\t")[-1])
    assert f"(the weights as trained: {last_val_loss:.4f})" in capsys.readouterr().err


def test_virtual_adversarial_training_refuses_an_archive_without_unlabelled_reviews(tlx, tmp_path):
    repo = prepared_repo(tmp_path, n_unsup=0)
    set_params(repo.path / "params.yaml", {"virtual_adversarial": 0.05, "backend": IN_PROCESS})
    with pytest.raises(PipelineError) as refused:
        run_here(repo, "train")
    assert str(refused.value) == ("data/raw/aclImdb_v1.tar.gz has no unlabelled reviews (train/unsup/) for virtual "
                                  "adversarial training: set virtual_adversarial to 0, or use the official archive")
    assert not (repo.path / "data/model").exists()


def test_pretrain_refuses_an_embedding_wider_than_the_vocabulary(here):
    repo = here
    # data.vocab_size 100 allows it, but the tiny archive has fewer than 64 distinct words
    set_params(repo.path / "params.yaml", {"model": {"embedding_dim": 64}, "data": {"vocab_size": 100},
                                           "pretrain": {"use": True}})
    with pytest.raises(PipelineError, match="model.embedding_dim 64 needs more than 64 words in the vocabulary"):
        run_here(repo, "pretrain")
    assert not (repo.path / "data/pretrained").exists()


def test_unused_pretraining_costs_nothing_and_turning_it_on_reruns_pretrain_and_train(repo):
    first = repo.run("dvc", "repro", "train")
    assert "pretrain: skipped (pretrain.use is false)" in first.stdout
    assert [p.name for p in (repo.path / "data/pretrained").iterdir()] == ["unused.txt"]
    repo.commit("random embedding")
    set_params(repo.path / "params.yaml", {"pretrain": {"window": 3}})  # nothing reads it while use is false
    assert "Running stage 'train'" not in repo.run("dvc", "repro", "train").stdout
    set_params(repo.path / "params.yaml", {"pretrain": {"use": True}})
    switched = repo.run("dvc", "repro", "train").stdout
    assert "Running stage 'pretrain'" in switched and "Running stage 'train'" in switched
    assert (repo.path / "data/pretrained/vectors.npy").is_file()


def test_train_can_start_its_embedding_from_the_pretrained_vectors(here):
    repo = here
    set_params(repo.path / "params.yaml", {"epochs": 1, "pretrain": {"use": True, "fine_tune_lr": 1e-6}})
    run_here(repo, "pretrain")
    run_here(repo, "train")
    vectors = np.load(repo.path / "data/pretrained/vectors.npy")
    with np.load(repo.path / "data/model/weights.npz") as weights:
        embedding = weights["0"]
    np.testing.assert_allclose(embedding, vectors, atol=1e-4)  # a few tiny steps away from them
    assert not np.array_equal(embedding, vectors)

    set_params(repo.path / "params.yaml", {"model": {"embedding_dim": 8}})
    with pytest.raises(PipelineError, match="the pretrained vectors are.*dvc repro pretrain"):
        run_here(repo, "train")  # alone, without pretrain's rerun first


@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_frozen_pretrained_vectors_stay_as_they_are_then_tune_after_frozen_epochs(tmp_path, backend, request):
    repo = prepared_repo(tmp_path, backend=backend)
    in_process = backend == IN_PROCESS and request.getfixturevalue("tlx")

    def run(stage):
        run_here(repo, stage) if in_process else repo.run("python", "-m", f"stages.{stage}")
    train = functools.partial(run, "train")
    pretrain = {"use": True, "frozen_epochs": 2, "fine_tune_lr": 0.01}
    set_params(repo.path / "params.yaml", {"epochs": 2, "lr": 0.003, "pretrain": pretrain})
    run("pretrain")
    train()
    vectors = np.load(repo.path / "data/pretrained/vectors.npy")
    with np.load(repo.path / "data/model/weights.npz") as weights:
        assert np.array_equal(weights["0"], vectors)
    frozen_log = epochs(repo.path)[0]

    set_params(repo.path / "params.yaml", {"epochs": 6})
    train()
    with np.load(repo.path / "data/model/weights.npz") as weights:
        assert np.abs(weights["0"] - vectors).max() > 1e-3, "the epochs after frozen_epochs tuned the embedding"
    log = epochs(repo.path)[0]
    assert {name: values[:2] for name, values in log.items()} == frozen_log
    assert log["loss"][-1] < 0.5, "the model learned"

    set_params(repo.path / "params.yaml", {"validation": 0.5, "patience": 10})  # early stopping's copy of the
    train()                                                                     # best weights, beside the thaw
    assert repo.json("data/model/train.json")["epochs_run"] == 6


def test_a_validation_split_too_small_for_early_stopping_is_refused(here):
    set_params(here.path / "params.yaml", {"validation": 0.001})
    with pytest.raises(PipelineError, match="^validation 0.001 holds out 0 of 200 training reviews"):
        run_here(here, "train")


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run_and_ignored_by_git(repo):
    stale = [repo.path / "data/.model.k9x2.tmp", repo.path / ".checkpoints/.train.k9x2.tmp"]
    for folder in stale:
        folder.mkdir(parents=True)
        (folder / "weights.npz").write_bytes(b"half")
    assert repo.run("git", "status", "--porcelain", "--untracked-files=all").stdout.count(".tmp") == 0
    set_params(repo.path / "params.yaml", {"epochs": 1})
    run_stage(repo, "train").check_returncode()
    assert not any(path.exists() for path in stale)


def test_a_second_stage_in_the_same_checkout_is_refused_while_one_runs(repo):
    set_params(repo.path / "params.yaml", {"epochs": 1000})
    train = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=repo.path, env=repo.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "epoch 1/" not in seen:
        seen += train.stderr.read(1) or pytest.fail(f"train ended early:\n{seen}")
    try:
        second = run_stage(repo, "prepare")
    finally:
        train.send_signal(signal.SIGTERM)
        train.wait(timeout=60)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert f"error: another stage of this checkout is running (pid {train.pid}: " in second.stderr
    assert "stages/train.py" in second.stderr


def unshare_works():
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not unshare_works(), reason="needs a private mount namespace (unshare -m) for a tiny disk")
def test_a_full_disk_is_one_error_line_and_leaves_nothing_half_written(repo):
    set_params(repo.path / "params.yaml", {"epochs": 1})
    (repo.path / "metrics").mkdir(exist_ok=True)  # metrics/ on a one-page disk: dvclive's first file fits, no more
    full = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs metrics && "
                           f"exec {sys.executable} -m stages.train"], cwd=repo.path, env=repo.env,
                          capture_output=True, text=True, timeout=600)
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
    assert "error: No space left on device" in full.stderr and "free some disk space" in full.stderr


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_bad_params_are_refused_before_the_backend_is_imported(repo, stage):
    set_params(repo.path / "params.yaml", {"lr": 5, "backend": "torch"})
    result = run_stage(repo, stage, "-X", "importtime")
    assert result.returncode == 1 and "error: params.yaml: 'lr' is 5.0" in result.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "paddle", "tensorlayerx"}, "the heavy work had not started"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine may have a GPU")
def test_asking_for_a_gpu_where_there_is_none_is_refused(repo):
    set_params(repo.path / "params.yaml", {"device": "gpu"})
    result = run_stage(repo, "train")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: device gpu was asked for, but torch sees no GPU: use device cpu or auto" in result.stderr
