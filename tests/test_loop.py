"""imdb_lstm/loop.py's fit, in the test process, with train's task: an epoch's figures, what stops it, early
stopping, and a resumed run that ends as an uninterrupted one.

tlx runs in the test process, on the backend IMDB_TEST_BACKEND names (torch if unset); test_backends.py
runs these files once more on each other installed backend. A mutation tool sees only what runs in its own
process (TESTING.md): these tests let it see the backend-facing code run.
"""
import numpy as np
import pytest
from conftest import IN_PROCESS
from helpers import spread_weights, weights_of

from imdb_lstm import backend, errors
from imdb_lstm.errors import PipelineError

ADVERSARIAL = [0.0] if IN_PROCESS == "mindspore" else [0.0, 0.5]  # params.py refuses it on mindspore


def classifier_task(model, ids, labels, batches=None, **options):
    """train's task for a small SentimentLSTM; `batches` (index arrays) in place of the seeded order."""
    net = model.SentimentLSTM(30, 4, 3, **options.pop("layers", {}))
    spread_weights(backend.tlx(), net)
    task = model.ClassifierTask(net, ids, labels, **{"epochs": 1, "batch_size": 4, "lr": 0.0, "seed": 0, **options})
    if batches is not None:
        task.batches = lambda rng: batches
    return task


def fit_here(task, folder=None, made_for="", **options):
    """loop.fit's Result (or the error it raises), publishing nothing."""
    from imdb_lstm.loop import fit
    published = []
    fit(task, folder, made_for, published.append, **options)
    return published[0]


@pytest.mark.parametrize("adversarial, virtual", [(a, 0.0) for a in ADVERSARIAL] + [(0.0, a) for a in ADVERSARIAL if a])
def test_an_epoch_records_its_mean_loss_and_accuracy(model, tlx, adversarial, virtual):
    """On the labelled reviews as they are: an adversarial step's pushed loss, and the unlabelled reviews'
    divergence, are not in the figures. At rate 0 the weights stay, so the figures are the start's."""
    rng = np.random.default_rng(0)
    ids, labels = rng.integers(0, 30, (10, 6)), rng.integers(0, 2, 10)
    unlabelled = rng.integers(2, 30, (5, 6)) if virtual else None
    task = classifier_task(model, ids, labels, [np.arange(0, 4), np.arange(4, 10)], adversarial=adversarial,
                           virtual_adversarial=virtual, unlabelled=unlabelled)
    logits = model.predict_logits(task.net, ids)
    shifted = logits - logits.max(1, keepdims=True)
    losses = -(shifted[range(10), labels] - np.log(np.exp(shifted).sum(1)))
    record, = fit_here(task).log
    assert record.loss == pytest.approx(losses.mean(), rel=1e-5), "each batch's mean loss weighted by its size"
    assert record.accuracy == round((logits.argmax(1) == labels).mean(), 6) and record.held_out == {}


def test_a_loss_that_is_not_a_number_stops_training_with_the_fix(model, tlx):
    task = classifier_task(model, np.ones((4, 3), np.int64), np.zeros(4, np.int64), lr=0.001)
    # the last layer: a NaN further down can vanish (paddle's ReLU gives 0 for NaN)
    tlx.files.assign_weights([np.full((3, 2), np.nan, np.float32), np.zeros(2, np.float32)], task.net.classify)
    with pytest.raises(PipelineError, match=r"^the training loss became nan: lower `lr` in params.yaml$"):
        fit_here(task)


def test_a_stop_signal_ends_the_run_before_the_next_step_and_publishes_nothing(model, tlx, monkeypatch):
    task = classifier_task(model, np.ones((4, 3), np.int64), np.zeros(4, np.int64), lr=0.1)
    before = weights_of(tlx, task.net)
    monkeypatch.setattr(errors, "_interrupted", True)
    with pytest.raises(KeyboardInterrupt):
        fit_here(task)
    assert all(np.array_equal(a, b) for a, b in zip(before, weights_of(tlx, task.net)))


def test_trimmed_batches_train_on_the_words_only(model, tlx):
    ids, labels = np.array([[0, 0, 3, 4], [0, 5, 6, 7]]), np.array([0, 1])

    def loss_of(net, rows):
        logits = tlx.convert_to_numpy(net(tlx.convert_to_tensor(rows)))
        shifted = logits - logits.max(1, keepdims=True)
        return -(shifted[[0, 1], [0, 1]] - np.log(np.exp(shifted).sum(1))).mean()
    for trim, rows in ((True, ids[:, 1:]), (False, ids)):
        task = classifier_task(model, ids, labels, [np.arange(2)], trim=trim,
                               layers={"pooling": "mean", "trim_padding": True})
        record, = fit_here(task).log
        assert record.loss == pytest.approx(loss_of(task.net, rows), rel=1e-5), trim
    assert loss_of(task.net, ids) != pytest.approx(loss_of(task.net, ids[:, 1:]), rel=1e-3), \
        "a padding step moves the loss"


def test_early_stopping_keeps_the_best_epochs_weights_and_stops_after_patience(model, tlx):
    """Validation losses 0.5, 0.4, 0.45, 0.6 (then 0.3, never reached) with patience 2: the run stops after
    epoch 4, and the net ends with epoch 2's weights."""
    rng = np.random.default_rng(1)
    ids, labels = rng.integers(1, 30, (8, 5)), rng.integers(0, 2, 8)
    task = classifier_task(model, ids, labels, held=(ids, labels), patience=2, epochs=5, lr=0.05)
    losses, seen = iter([0.5, 0.4, 0.45, 0.6, 0.3]), []

    def held_out():
        seen.append(weights_of(tlx, task.net))
        return {"val_loss": next(losses), "val_accuracy": 0.5}
    task.held_out = held_out
    result = fit_here(task)
    assert [record.epoch for record in result.log] == [1, 2, 3, 4] and result.stopped
    assert result.best.epoch == 2 and result.kept is result.best
    assert not all(np.array_equal(a, b) for a, b in zip(seen[1], seen[3])), "the weights moved after epoch 2"
    assert all(np.array_equal(a, b) for a, b in zip(seen[1], weights_of(tlx, task.net)))


def test_a_resumed_run_ends_as_an_uninterrupted_one(model, tlx, tmp_path):
    """Two epochs in one run, and one epoch then a longer run from its checkpoint (the optimizer's state and
    the batch order's too): the same log and weights."""
    rng = np.random.default_rng(2)
    ids, labels = rng.integers(1, 30, (12, 5)), rng.integers(0, 2, 12)

    def run(epochs, folder):
        backend.seed(0)
        task = classifier_task(model, ids, labels, epochs=epochs, lr=0.05)
        return fit_here(task, folder, "run"), weights_of(tlx, task.net)

    straight, straight_weights = run(2, None)
    run(1, tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint/state.json").is_file(), "a finished run keeps its last epoch's"
    resumed, resumed_weights = run(2, tmp_path / "checkpoint")
    assert resumed.log == straight.log
    assert all(np.array_equal(a, b) for a, b in zip(straight_weights, resumed_weights))
