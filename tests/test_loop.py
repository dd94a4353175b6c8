"""imdb_lstm/loop.py's fit, in the test process, with train's task: an epoch's figures, what stops it, early
stopping, and a resumed run that ends as an uninterrupted one.

tlx runs in the test process, on the backend IMDB_TEST_BACKEND names (torch if unset); test_backends.py
runs these files once more on each other installed backend. A mutation tool sees only what runs in its own
process (TESTING.md): these tests let it see the backend-facing code run.
"""
import re

import numpy as np
import pytest
from conftest import IN_PROCESS
from helpers import refuses_rate_schedules, spread_weights, weights_of

from imdb_lstm import backend, backends, errors
from imdb_lstm.errors import PipelineError
from imdb_lstm.training import slanted_rate

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
    """Validation losses 0.5, 0.4, 0.4, 0.6 (then 0.3, never reached) with patience 2: a tie is no better, so
    the run stops after epoch 4, and the net ends with epoch 2's weights."""
    rng = np.random.default_rng(1)
    ids, labels = rng.integers(1, 30, (8, 5)), rng.integers(0, 2, 8)
    task = classifier_task(model, ids, labels, held=(ids, labels), patience=2, epochs=5, lr=0.05)
    losses, seen = iter([0.5, 0.4, 0.4, 0.6, 0.3]), []

    def held_out():
        seen.append(weights_of(tlx, task.net))
        return {"val_loss": next(losses), "val_accuracy": 0.5}
    task.held_out = held_out
    result = fit_here(task)
    assert [record.epoch for record in result.log] == [1, 2, 3, 4] and result.stopped
    assert result.best.epoch == 2 and result.kept is result.best
    assert not all(np.array_equal(a, b) for a, b in zip(seen[1], seen[3])), "the weights moved after epoch 2"
    assert all(np.array_equal(a, b) for a, b in zip(seen[1], weights_of(tlx, task.net)))


def test_a_resumed_run_ends_as_an_uninterrupted_one(model, tlx, tmp_path, capsys):
    """Three epochs in one run, and one, two and three epochs each going on from the last's checkpoint (the
    optimizer's state and the batch order's too): the same log, best epoch and weights."""
    rng = np.random.default_rng(2)
    ids, labels = rng.integers(1, 30, (12, 5)), rng.integers(0, 2, 12)
    held = (rng.integers(1, 30, (6, 5)), rng.integers(0, 2, 6))

    def run(epochs, folder):  # with everything a checkpoint keeps: early stopping's best, the weight average,
        backend.seed(0)  # and the embedding's first epoch frozen (after it, a new optimizer)
        task = classifier_task(model, ids, labels, epochs=epochs, lr=0.05, held=held, patience=5,
                               warm_layers=("embedding",), frozen_epochs=1, fine_tune_lr=0.02)
        return fit_here(task, folder, "run", average_decay=0.5), weights_of(tlx, task.net)

    straight, straight_weights = run(3, None)
    for epochs in (1, 2):
        run(epochs, tmp_path / "checkpoint")
        assert (tmp_path / "checkpoint/state.json").is_file(), "a finished run keeps its last epoch's"
    capsys.readouterr()
    resumed, resumed_weights = run(3, tmp_path / "checkpoint")
    assert f"train: resuming after epoch 2, from the checkpoint in {tmp_path / 'checkpoint'}" in capsys.readouterr().err
    assert resumed.log == straight.log and resumed.best == straight.best
    assert all(np.array_equal(a, b) for a, b in zip(straight_weights, resumed_weights))


def test_validation_scores_the_held_out_reviews_and_names_the_loss_it_watches(model, tlx):
    rng = np.random.default_rng(3)
    ids, labels = rng.integers(1, 30, (8, 5)), rng.integers(0, 2, 8)
    held = (rng.integers(1, 30, (6, 5)), np.array([0, 1, 1, 0, 1, 1]))
    task = classifier_task(model, ids, labels, held=held)
    task.net.set_eval()
    logits = model.predict_logits(task.net, held[0])
    shifted = logits - logits.max(1, keepdims=True)
    loss = -(shifted[range(6), held[1]] - np.log(np.exp(shifted).sum(1))).mean()
    scores = task.held_out()
    accuracy = round((logits.argmax(1) == held[1]).mean(), 6)
    assert scores == {"val_loss": round(scores["val_loss"], 6), "val_accuracy": accuracy}
    assert scores["val_loss"] == pytest.approx(loss, abs=1e-6) and task.monitor == "val_loss"
    assert task.describe_scores(scores) == f", validation loss {scores['val_loss']:.4f}"
    plain = classifier_task(model, ids, labels)
    assert plain.held_out() == {} and plain.describe_scores({}) == "" and plain.monitor is None


def test_warm_layers_stay_frozen_for_their_epochs_then_train_at_the_fine_tuning_rate(model, tlx):
    rng = np.random.default_rng(5)
    ids, labels = rng.integers(1, 30, (8, 5)), rng.integers(0, 2, 8)
    task = classifier_task(model, ids, labels, epochs=3, lr=0.05, warm_layers=("embedding", "lstm"), frozen_epochs=1,
                           fine_tune_lr=0.5)
    assert [task.new_phase(epoch) for epoch in (1, 2, 3)] == [False, True, False]
    assert [task.describe(epoch) for epoch in (1, 2)] == ["epoch 1/3 (embedding and lstm frozen)", "epoch 2/3"]
    rates, embeddings, make_step = [], [], task.make_step

    def recording_make_step(epoch):
        step = make_step(epoch)
        rates.append(step.net_with_train.optimizer.lr)
        embeddings.append(weights_of(tlx, task.net.embedding)[0])
        return step
    task.make_step = recording_make_step
    fit_here(task)
    assert rates == [0.05, 0.5], "a new optimizer for the thawed epochs, at fine_tune_lr"
    np.testing.assert_array_equal(embeddings[0], embeddings[1])  # epoch 1 left the embedding as it was
    assert not np.array_equal(embeddings[1], weights_of(tlx, task.net.embedding)[0]), "then it trains"


def test_ulmfit_thaws_a_layer_an_epoch_from_the_top_each_at_the_rate_above_it_over_2_6(model, tlx):
    """Each epoch's one batch takes a new optimizer's first step, which moves each weight by at most its rate
    (Adam's first step: the rate times the gradient's sign). The rates: a slanted triangle over the 3 steps."""
    rng = np.random.default_rng(5)
    ids, labels = rng.integers(1, 30, (4, 5)), rng.integers(0, 2, 4)
    task = classifier_task(model, ids, labels, [np.arange(4)], epochs=3, lr=0.32, warm_layers=("embedding", "lstm"),
                           frozen_epochs=1, fine_tune_lr=0.064, fine_tune="ulmfit")
    assert [task.frozen_layers(epoch) for epoch in (1, 2, 3)] == [("embedding", "lstm"), ("embedding",), ()]
    assert [task.new_phase(epoch) for epoch in (1, 2, 3)] == [False, True, True]
    assert task.describe(2) == "epoch 2/3 (embedding frozen)" and task.describe(3) == "epoch 3/3"
    rate_of = task.schedule(3, 2, 4)  # step 2 of epoch 3's 4: the run's 11th of 12
    assert [rate_of(layer.all_weights[0]) for layer in (task.net.embedding, task.net.lstm, task.net.classify)] == [
        slanted_rate(10, 12, 0.064) / 2.6 ** 2, slanted_rate(10, 12, 0.064) / 2.6, slanted_rate(10, 12, 0.064)]
    if backends.module(IN_PROCESS).set_rates is None:
        assert refuses_rate_schedules(IN_PROCESS), "no fine-tuning at rates the optimizer cannot take"
        return
    layers = [task.net.embedding, task.net.lstm, task.net.classify]
    starts, make_step = [], task.make_step

    def recording_make_step(epoch):
        starts.append([np.concatenate([w.ravel() for w in weights_of(tlx, layer)]) for layer in layers])
        return make_step(epoch)
    task.make_step = recording_make_step
    fit_here(task)
    starts.append([np.concatenate([w.ravel() for w in weights_of(tlx, layer)]) for layer in layers])
    moves = [[np.abs(after - before).max() for before, after in zip(*pair)] for pair in zip(starts, starts[1:])]
    top = [0.32 / 32, 0.064, 0.064 / 32]  # slanted_rate of steps 0, 1 and 2 of 3
    assert moves[0] == pytest.approx([0, 0, top[0]], rel=1e-3, abs=1e-9), "the layers above the LM's only"
    assert moves[1] == pytest.approx([0, top[1] / 2.6, top[1]], rel=1e-3, abs=1e-9)
    assert moves[2] == pytest.approx([top[2] / 2.6 ** 2, top[2] / 2.6, top[2]], rel=1e-3)


def test_each_epochs_figures_go_to_dvclive_and_a_resumed_run_logs_the_earlier_ones_again(model, tlx, tmp_path):
    from dvclive import Live
    rng = np.random.default_rng(6)
    ids, labels = rng.integers(1, 30, (8, 5)), rng.integers(0, 2, 8)
    held = (rng.integers(1, 30, (4, 5)), rng.integers(0, 2, 4))

    def run(epochs, name):
        backend.seed(0)
        task = classifier_task(model, ids, labels, held=held, epochs=epochs, lr=0.05, patience=5)
        live = Live(str(tmp_path / name), dvcyaml=False, save_dvc_exp=False, report=None)
        result = fit_here(task, tmp_path / "checkpoint", "run", live=live)
        live.end()
        plots = tmp_path / name / "plots/metrics"
        return result, {p.stem: p.read_text() for p in plots.glob("*.tsv")}

    straight, logged = run(2, "straight")
    assert sorted(logged) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert logged["val_loss"].splitlines() == ["step\tval_loss"] + [f"{r.epoch}\t{r.held_out['val_loss']}"
                                                                    for r in straight.log]
    (tmp_path / "checkpoint").rename(tmp_path / "straight-checkpoint")  # the resumed run starts from its own
    run(1, "first")
    resumed, relogged = run(2, "resumed")
    assert relogged == logged and resumed.log == straight.log


def test_the_task_takes_the_seeded_batch_order_and_each_epochs_own_unlabelled_batches(model, tlx):
    """Trimmed: batches of similar length (batch_order's by_length); with virtual adversarial training each
    step also takes unlabelled_batches' pair from a generator of the seed and the epoch, so a resumed run
    draws what an uninterrupted one did."""
    from imdb_lstm.text import lengths
    from imdb_lstm.training import AdversarialLoss, VirtualAdversarialLoss, batch_order, unlabelled_batches
    rng = np.random.default_rng(7)
    ids, labels, unlabelled = rng.integers(0, 30, (12, 6)), rng.integers(0, 2, 12), rng.integers(0, 30, (9, 6))
    ids[:, :2] = unlabelled[:, :2] = 0
    task = classifier_task(model, ids, labels, trim=True, unlabelled=unlabelled, virtual_adversarial=0.1, seed=4)
    batches = task.batches(np.random.default_rng(0))
    assert [b.tolist() for b in batches] == [b.tolist() for b in batch_order(lengths(ids), 4, np.random.default_rng(0),
                                                                             by_length=True)]
    pairs = unlabelled_batches(unlabelled, 3, 4, np.random.default_rng([4, 3, 2]), True, 4)
    inputs = task.inputs(2, batches, 1, lambda rows: rows)
    for (tensors, predictions), batch, pair in zip(inputs, batches[1:], list(pairs)[1:], strict=True):
        assert predictions == len(batch) and len(tensors) == 4
        np.testing.assert_array_equal(tlx.convert_to_numpy(tensors[0]), ids[batch][:, 2:])
        for tensor, array in zip(tensors[2:], pair):
            np.testing.assert_array_equal(tlx.convert_to_numpy(tensor), array)
    if IN_PROCESS != "mindspore":  # params.py refuses both there
        losses = [classifier_task(model, ids, labels, **{key: 0.1}, unlabelled=unlabelled).make_step(1).net_with_train
                  for key in ("adversarial", "virtual_adversarial")]
        assert [type(step.net_with_loss) for step in losses] == [AdversarialLoss, VirtualAdversarialLoss]


def test_a_state_goes_through_json_as_it_was_with_each_records_scores_in_their_order():
    """A checkpoint's state.json is written with sorted keys; the scores keep their order (dvclive logs
    them in it) and the best epoch comes back."""
    import json

    from imdb_lstm.loop import Record, State, Totals
    log = [Record(1, 0.5, 0.75, {"val_loss": 0.4, "val_accuracy": 0.8}),
           Record(2, 0.25, 0.875, {"val_loss": 0.6, "val_accuracy": 0.7})]
    state = State(3, 2, {"seed": [1]}, Totals(1.5, 3, 4), log, log[0], 0.75)
    again = State.from_json(json.loads(json.dumps(state.to_json(), sort_keys=True)))
    assert again == state and list(again.log[1].held_out) == ["val_loss", "val_accuracy"]
    assert again.log[0].figures() == {"loss": 0.5, "accuracy": 0.75, "val_loss": 0.4, "val_accuracy": 0.8}
    assert State.from_json(json.loads(json.dumps(State().to_json()))) == State()


def test_each_epoch_ends_in_a_line_and_a_log_gets_its_progress(model, tlx, monkeypatch, capsys):
    """In a log (stderr not a terminal): the progress lines of the bar, then the epoch's figures rounded to six
    places, its validation loss and, with a weight average, the validation loss of the weights as trained."""
    monkeypatch.setenv("TQDM_MININTERVAL", "0")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    rng = np.random.default_rng(8)
    ids, labels = rng.integers(1, 30, (7, 5)), np.array([0, 1, 1, 0, 1, 1, 1])
    task = classifier_task(model, ids, labels, held=(ids, labels), lr=0.05)
    capsys.readouterr()
    result = fit_here(task, average_decay=0.5)
    record, = result.log
    assert 0 < result.seconds < 600
    assert record.accuracy == round(record.accuracy, 6) and record.loss == round(record.loss, 6), "k/7 has more"
    lines = capsys.readouterr().err.splitlines()
    progress = [line.split(" [")[0] for line in lines[:2]]
    assert progress == ["epoch 1/1: 57% 4/7 reviews", "epoch 1/1: 100% 7/7 reviews"]
    scores = (f"loss {record.loss:.4f}, accuracy {record.accuracy:.4f}, "
              f"validation loss {record.held_out['val_loss']:.4f}")
    assert re.fullmatch(rf"epoch 1/1: {scores} \(the weights as trained: \d\.\d{{4}}\) in \d s", lines[-1])
