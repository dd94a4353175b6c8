"""The lm stage: a language model on the training and unlabelled reviews, which train can start from."""

import numpy as np
import pytest
from conftest import BACKENDS, IN_PROCESS, require
from project import epochs, kill_stage_after, prepared_repo, run_here, set_params

from imdb_lstm.errors import PipelineError

LM = {"lm": {"use": True, "output_words": 20, "steps": 8, "epochs": 2, "lr": 0.01}}


def test_the_lm_reads_the_training_and_unlabelled_reviews_only_and_scores_held_out_ones(tmp_path):
    from imdb_lstm.archive import iter_reviews
    from imdb_lstm.text import tokenize

    repo = prepared_repo(tmp_path)
    set_params(repo.path / "params.yaml", LM)
    repo.run("dvc", "repro", "lm")
    metrics = repo.json("metrics/lm.json")
    words = {split: sum(len(tokenize(review.text)) for review in iter_reviews(
        repo.path / "data/raw/aclImdb_v1.tar.gz", include_unsup=True) if review.split == split)
        for split in ("train", "test")}
    # two streams (trained on, held out), each cut into rows of 8 words plus the next word: each leaves
    # 1 to 8 words over. The test split's thousands of words are not among them.
    assert 2 <= words["train"] - metrics["train_words"] - metrics["held_out_words"] <= 16
    assert words["test"] > 1000
    assert metrics["held_out_words"] > 0 and metrics["epochs"] == 2
    perplexities = [epoch["perplexity"] for epoch in metrics["log"]]
    # better than a uniform guess over the 20 classes, and better after the second epoch than the first
    assert perplexities[-1] == metrics["perplexity"] < perplexities[0] < 20
    assert [epoch["epoch"] for epoch in metrics["log"]] == [1, 2]
    assert sorted(p.name for p in (repo.path / "data/lm").iterdir()) == ["lm.json", "weights.npz"]
    assert not (repo.path / ".checkpoints/lm").exists()
    # prepare's encoding settings change data/prepared/vocab.json, but not the words the LM knows
    set_params(repo.path / "params.yaml", {"data": {"seq_len": 30, "pad": "post"}})
    assert "Stage 'lm' didn't change, skipping" in repo.run("dvc", "repro", "lm").stdout


def test_with_lm_use_false_the_stage_loads_no_backend_and_train_starts_as_before(tmp_path):
    repo = prepared_repo(tmp_path)
    lm = repo.run("dvc", "repro", "lm")
    assert "Using PyTorch backend" not in lm.stderr and "lm: skipped (lm.use is false)" in lm.stdout
    assert repo.json("metrics/lm.json") == {}
    assert [p.name for p in (repo.path / "data/lm").iterdir()] == ["unused.txt"]


def test_with_lm_use_false_train_writes_the_bytes_it_writes_without_the_lm_stage(tlx, tmp_path):
    """The default pipeline pays nothing for the lm stage and its outputs do not change. (The golden hashes of
    test_reproducible, committed before the stage existed, say the same of train and evaluate.)"""
    repos = {}
    for name in ("with", "without"):
        repo = repos[name] = prepared_repo(tmp_path / name)
        set_params(repo.path / "params.yaml", {"backend": IN_PROCESS})
        if name == "with":
            run_here(repo, "lm")
        run_here(repo, "train")
    assert not (repos["without"].path / "data/lm").exists()
    outputs = ["data/model/weights.npz", "data/model/model.json", "data/model/train.json",
               "metrics/epochs/metrics.json"]
    for output in outputs:
        assert (repos["with"].path / output).read_bytes() == (repos["without"].path / output).read_bytes(), output


def test_a_lm_killed_within_and_after_an_epoch_resumes_and_ends_with_an_uninterrupted_runs_bytes(
        tlx, tmp_path, capsys):
    """The kills need a process of their own; the runs after them need none."""
    repo = prepared_repo(tmp_path, n_per_class=60)
    # one row of 4 words a step: over 500 steps an epoch (about 700), so a checkpoint falls within it; the
    # GPU recipe's LM, whose carried state starts from zeros at each checkpoint, so a resumed run can match
    lm = {**LM["lm"], "batch_size": 1, "steps": 4, "softmax": "tied", "carry_state": True}
    set_params(repo.path / "params.yaml", {"backend": IN_PROCESS, "lm": lm})
    repo.run("dvc", "repro", "pretrain")
    kill_stage_after(repo, "lm", "lm epoch 1/2: 500/")
    again = kill_stage_after(repo, "lm", "lm epoch 1/2: loss")
    assert "lm: resuming epoch 1 after 500 of its steps" in again
    capsys.readouterr()
    run_here(repo, "lm")
    assert "lm: resuming after epoch 1," in capsys.readouterr().err
    outputs = [(repo.path / name).read_bytes() for name in ("data/lm/weights.npz", "metrics/lm.json")]
    run_here(repo, "lm")
    assert "resuming" not in capsys.readouterr().err  # as long as the checkpoint's run: starts over
    assert [(repo.path / name).read_bytes() for name in ("data/lm/weights.npz", "metrics/lm.json")] == outputs


@pytest.mark.parametrize("lm_backend", BACKENDS)
def test_the_lm_of_one_backend_starts_the_classifier_on_another(tmp_path, lm_backend):
    """The embedding and LSTM the LM trained are the classifier's, bit for bit, while they stay frozen
    (every epoch here); the layers above them train."""
    train_backend = BACKENDS[(BACKENDS.index(lm_backend) + 1) % len(BACKENDS)]
    require(lm_backend)
    require(train_backend)
    repo = prepared_repo(tmp_path, backend=lm_backend)
    set_params(repo.path / "params.yaml", {**LM, "lm": {**LM["lm"], "frozen_epochs": 10}})
    repo.run("dvc", "repro", "lm")
    set_params(repo.path / "params.yaml", {"backend": train_backend})
    repo.run("dvc", "repro", "prepare", "pretrain")
    repo.run("python", "-m", "stages.train")  # not through dvc: the LM stage would rerun on the new backend
    assert repo.json("data/lm/lm.json")["trained_on"].startswith(lm_backend)
    with np.load(repo.path / "data/lm/weights.npz") as lm, np.load(repo.path / "data/model/weights.npz") as model:
        lm_weights = [lm[str(i)] for i in range(len(lm.files))]
        model_weights = [model[str(i)] for i in range(len(model.files))]
    shared = len(lm_weights) - 2  # the LM's own output layer: weights and bias
    for lm_weight, model_weight in zip(lm_weights[:shared], model_weights):
        assert lm_weight.shape == model_weight.shape and (lm_weight == model_weight).all()
    loss = epochs(repo.path)[0]["loss"]
    assert loss[-1] < loss[0]  # the layers above train


def test_a_tied_lm_that_carries_its_state_trains_and_starts_the_classifier(tlx, tmp_path):
    """The GPU recipe's language model, at a tiny size: a softmax over every word tied to the embedding, the
    stream read in lanes with the state carried, dropout before the softmax. (The tiny archive's words come
    at random: the most it can learn is how often each comes.)"""
    repo = prepared_repo(tmp_path)
    lm = {**LM["lm"], "softmax": "tied", "carry_state": True, "dropout": 0.1, "batch_size": 4,
          "frozen_epochs": 10}
    set_params(repo.path / "params.yaml", {**LM, "backend": IN_PROCESS, "lm": lm})
    for stage in ("pretrain", "lm", "train"):
        run_here(repo, stage)
    metrics = repo.json("metrics/lm.json")
    perplexities = [epoch["perplexity"] for epoch in metrics["log"]]
    vocabulary = len(repo.json("data/prepared/vocab.json")["words"])
    assert max(perplexities) < vocabulary, "over every word id: a uniform guess scores the vocabulary's size"
    assert repo.json("data/lm/lm.json")["output_words"] == vocabulary
    with np.load(repo.path / "data/lm/weights.npz") as saved, np.load(repo.path / "data/model/weights.npz") as model:
        shared = 1 + len(tlx.nn.LSTM(2, 2).all_weights)  # the embedding, then the LSTM's four tensors
        for i in range(shared):
            assert (saved[str(i)] == model[str(i)]).all(), "frozen: the classifier's start, bit for bit"


def test_train_refuses_a_language_model_of_another_vocabulary(tlx, tmp_path):
    repo = prepared_repo(tmp_path)
    set_params(repo.path / "params.yaml", {**LM, "backend": IN_PROCESS})
    for stage in ("pretrain", "lm"):
        run_here(repo, stage)
    set_params(repo.path / "params.yaml", {"data": {"vocab_size": 20}})
    run_here(repo, "prepare")
    with pytest.raises(PipelineError, match=r"^the language model in data/lm was trained on another vocabulary: "
                                            r"rerun `dvc repro lm`$"):
        run_here(repo, "train")


def test_too_few_words_for_one_row_are_refused_before_the_backend_loads(tmp_path):
    repo = prepared_repo(tmp_path)
    set_params(repo.path / "params.yaml", {"lm": {**LM["lm"], "steps": 4000}})
    repo.run("dvc", "repro", "pretrain")
    lm = repo.run("python", "-m", "stages.lm", check=False)
    assert lm.returncode == 1 and "Using PyTorch backend" not in lm.stderr
    # the 216 reviews it trains on hold more than 4,000 words; the 4 it holds out, fewer
    assert lm.stderr.strip().splitlines()[-1] == ("error: the held-out reviews hold 70 words, not enough for one row "
                                                  "of lm.steps 4000: lower lm.steps")
    assert not (repo.path / "data/lm").exists() and not (repo.path / "metrics/lm.json").exists()
