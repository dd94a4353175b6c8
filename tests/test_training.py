"""Training, in the test process: the validation hold-out, the batch order, the checkpoint files, the
training step and the weight average on the backend IMDB_TEST_BACKEND names (torch if unset); the loop
that runs them is tests/test_loop.py's."""
import json

import numpy as np
import pytest
from conftest import IN_PROCESS
from helpers import records_gradient, refuses_rate_schedules, spread_weights, weights_of

from imdb_lstm import backends, checkpoint
from imdb_lstm.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from imdb_lstm.errors import PipelineError
from imdb_lstm.training import MIN_HELD_OUT, batch_order, hold_out, slanted_rate

IDS, LABELS = np.arange(1000).reshape(500, 2), np.arange(500) % 2


def test_no_validation_keeps_every_review_for_training():
    ids, labels, held = hold_out(IDS, LABELS, 0.0, seed=1)
    assert ids is IDS and labels is LABELS and held is None


def test_the_hold_out_is_a_seeded_split_of_the_training_reviews():
    ids, labels, (held_ids, held_labels) = hold_out(IDS, LABELS, 0.3, seed=1)
    assert (len(ids), len(held_ids)) == (350, 150)
    rows = sorted(ids[:, 0].tolist() + held_ids[:, 0].tolist())
    assert rows == IDS[:, 0].tolist(), "every review on exactly one side"
    assert ids[:, 0].tolist() == sorted(ids[:, 0].tolist()), "training keeps the reviews' order"
    assert (labels == LABELS[ids[:, 0] // 2]).all() and (held_labels == LABELS[held_ids[:, 0] // 2]).all()
    # the split is part of what a seed means: committed records with validation depend on it
    assert held_ids[:6, 0].tolist() == [968, 798, 8, 712, 68, 316]
    again = hold_out(IDS, LABELS, 0.3, seed=1)
    other = hold_out(IDS, LABELS, 0.3, seed=2)
    assert (again[2][0] == held_ids).all() and not (other[2][0] == held_ids).all()


@pytest.mark.parametrize("fraction", [0.1, 0.9])
def test_a_hold_out_too_small_on_either_side_is_refused(fraction):
    with pytest.raises(PipelineError) as error:
        hold_out(IDS, LABELS, fraction, seed=1)
    held = round(500 * fraction)
    assert str(error.value) == (f"validation {fraction} holds out {held} of 500 training reviews; early stopping "
                                f"needs at least {MIN_HELD_OUT} on each side: raise or lower `validation`, or set it "
                                "to 0")
    hold_out(IDS[:200], LABELS[:200], 0.5, seed=1)  # exactly MIN_HELD_OUT on each side is enough


def test_a_checkpoint_round_trips_and_is_used_only_for_its_fingerprint(tmp_path):
    folder = tmp_path / "train"
    arrays = {"weights": [np.ones((2, 3), np.float32), np.arange(4)], "rng": [], "best": [np.zeros(1)]}
    save_checkpoint({"fingerprint": "abc", "epoch": 2, "log": [[1, 0.5], [2, 0.25]]}, arrays, folder)
    state, loaded = load_checkpoint("abc", folder)
    assert state == {"fingerprint": "abc", "epoch": 2, "log": [[1, 0.5], [2, 0.25]]}
    assert list(loaded) == ["weights", "rng", "best"]
    assert all(len(loaded[k]) == len(v) and all((a == b).all() and a.dtype == b.dtype for a, b in zip(loaded[k], v))
               for k, v in arrays.items())
    assert load_checkpoint("other", folder) is None
    (folder / "arrays.npz").write_bytes(b"half a zip")  # damaged: training starts over
    assert load_checkpoint("abc", folder) is None
    assert load_checkpoint("abc", tmp_path / "none") is None
    state_file = json.loads((folder / "state.json").read_text())
    assert state_file["arrays"] == [["weights", 2], ["rng", 0], ["best", 1]]


def test_the_fingerprint_covers_params_inputs_code_and_backend_version(tmp_path):
    data = tmp_path / "train_ids.npy"
    data.write_bytes(b"1")
    base = fingerprint({"lr": 0.001}, [data], "torch 2.13.0")
    assert fingerprint({"lr": 0.001}, [data], "torch 2.13.0") == base
    assert fingerprint({"lr": 0.002}, [data], "torch 2.13.0") != base
    assert fingerprint({"lr": 0.001}, [data], "torch 2.14.0") != base
    assert fingerprint({"a": 1, "b": 2}, [], "x") == fingerprint({"b": 2, "a": 1}, [], "x"), \
        "the params, not their order"
    data.write_bytes(b"2")
    assert fingerprint({"lr": 0.001}, [data], "torch 2.13.0") != base
    code = {path.relative_to(checkpoint.CODE[0].parents[1]).as_posix() for path in checkpoint.CODE}
    assert {"imdb_lstm/training.py", "imdb_lstm/backends/tensorflow/fixes.py"} <= code


def test_batches_cover_every_review_once_in_a_seeded_order():
    review_lengths = np.arange(130) % 17
    batches = batch_order(review_lengths, 32, np.random.default_rng(5), by_length=False)
    assert [len(b) for b in batches] == [32, 32, 32, 32, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(130))
    assert (np.concatenate(batches) == np.random.default_rng(5).permutation(130)).all(), "one permutation, cut"
    again = batch_order(review_lengths, 32, np.random.default_rng(5), by_length=False)
    assert all((a == b).all() for a, b in zip(batches, again))


def test_by_length_ties_keep_the_shuffled_order_and_the_batches_are_shuffled_again():
    review_lengths = np.arange(40) % 4  # ten reviews of each length
    rng = np.random.default_rng(3)
    order = rng.permutation(40).tolist()
    by_length = sorted(order, key=lambda review: review_lengths[review])  # Python's sort is stable
    cut = [by_length[i:i + 2] for i in range(0, 40, 2)]
    expected = [cut[i] for i in rng.permutation(20)]
    batches = batch_order(review_lengths, 2, np.random.default_rng(3), by_length=True)
    assert [b.tolist() for b in batches] == expected


def test_by_length_a_batch_holds_reviews_of_similar_length_and_batches_come_shuffled():
    rng = np.random.default_rng(0)
    review_lengths = rng.integers(1, 1000, 5000)
    batches = batch_order(review_lengths, 10, np.random.default_rng(1), by_length=True)
    assert sorted(np.concatenate(batches).tolist()) == list(range(5000))
    assert sum(len(b) < 10 for b in batches) == 0, "a window of 50 batches divides 5000 reviews evenly"
    spread = np.mean([np.ptp(review_lengths[b]) for b in batches])
    assert spread < 60, f"sorted inside windows of 500: lengths in a batch differ by {spread:.0f} on average"
    firsts = [review_lengths[b].min() for b in batches]
    assert not (np.diff(firsts) >= 0).all(), "the batches are shuffled, not in length order"
    window = batch_order(review_lengths[:1000], 10, np.random.default_rng(2), by_length=True)
    assert len(window) == 100 and all(len(b) == 10 for b in window)
    # each window of 500 reviews is sorted on its own: a batch never mixes two windows
    windows = np.random.default_rng(2).permutation(1000).reshape(2, 500)
    for batch in window:
        assert any(set(batch) <= set(w) for w in windows)


def test_the_counting_loss_is_cross_entropy_and_counts_correct_predictions(tlx):
    from imdb_lstm.training import CountingLoss
    loss_fn = CountingLoss(tlx)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0]], np.float32)
    labels = np.array([0, 0, 1])
    loss = float(loss_fn(tlx.convert_to_tensor(logits), tlx.convert_to_tensor(labels)))
    shifted = logits - logits.max(1, keepdims=True)
    expected = -(shifted[range(3), labels] - np.log(np.exp(shifted).sum(1))).mean()
    assert loss == pytest.approx(expected, rel=1e-6)
    assert loss_fn.correct == 1
    loss_fn(tlx.convert_to_tensor(logits), tlx.convert_to_tensor(np.array([0, 1, 0])))
    assert loss_fn.correct == 4, "it adds up until the loop resets it"


ADVERSARIAL = (0.0, 0.1) if IN_PROCESS != "mindspore" else (0.0,)  # params.py refuses it on mindspore


@pytest.mark.parametrize("adversarial", ADVERSARIAL)
def test_frozen_layers_stay_and_the_rest_trains(model, tlx, adversarial):
    from imdb_lstm.training import CountingLoss, make_step
    rng = np.random.default_rng(0)
    ids, labels = tlx.convert_to_tensor(rng.integers(1, 30, (8, 5))), tlx.convert_to_tensor(rng.integers(0, 2, 8))
    for frozen in ((), ("embedding",), ("embedding", "lstm")):
        net = model.SentimentLSTM(30, 4, 8)
        spread_weights(tlx, net)  # whatever the generator's state: a start whose ReLUs all sit at 0 trains nothing
        embedding, lstm = len(net.embedding.all_weights), len(net.lstm.all_weights)
        before = weights_of(tlx, net)
        step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), lr=0.1,
                         frozen=[getattr(net, name) for name in frozen], adversarial=adversarial)
        net.set_train()
        step(ids, labels)
        after = weights_of(tlx, net)
        layer_of = ["embedding"] * embedding + ["lstm"] * lstm + ["head"] * (len(before) - embedding - lstm)
        for layer, old, new in zip(layer_of, before, after):
            assert (old == new).all() == (layer in frozen), layer
        if IN_PROCESS in ("torch", "paddle"):  # the others switch nothing: a step lists the weights it trains
            assert [records_gradient(w) for w in net.all_weights] == [layer not in frozen for layer in layer_of]


def test_the_weight_average_is_the_debiased_mean_of_the_weights_after_each_step(model, tlx):
    """Each step's weights count `decay` times the next's; the weights before the first step not at all.
    in_place puts the average into the net for its block only."""
    from imdb_lstm.training import CountingLoss, WeightAverage, make_step
    net = model.SentimentLSTM(30, 4, 3)
    spread_weights(tlx, net)
    loss_fn = CountingLoss(tlx)
    step = make_step(tlx, net, loss_fn, list(net.trainable_weights), lr=0.1)
    after = []

    def recording_step(*batch):
        step(*batch)
        after.append(weights_of(tlx, net))

    net.set_train()
    rng = np.random.default_rng(0)
    ids, labels = rng.integers(1, 30, (12, 5)), rng.integers(0, 2, 12)
    decay = 0.5  # far from 1: a wrong weighting or a start that counts shows well above rounding
    average = WeightAverage(tlx, net, decay)
    for start in (0, 4, 8):
        recording_step(tlx.convert_to_tensor(ids[start:start + 4]), tlx.convert_to_tensor(labels[start:start + 4]))
        average.update()
    factors = np.array([decay ** 2, decay, 1.0])
    for i, value in enumerate(average.values):
        steps = np.stack([weights[i].astype(np.float64) for weights in after])
        expected = np.tensordot(factors, steps, axes=1) / factors.sum()
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)
    own = weights_of(tlx, net)
    assert any(not np.array_equal(a, b) for a, b in zip(own, average.values))
    with average.in_place():
        assert all(np.array_equal(a, b) for a, b in zip(weights_of(tlx, net), average.values))
    assert all(np.array_equal(a, b) for a, b in zip(weights_of(tlx, net), own)), "the net's own weights are back"
    resumed = WeightAverage(tlx, net, decay, average.total, average.values)
    assert resumed.total == average.total and resumed.values is average.values, "a saved average resumes"


@pytest.mark.parametrize("steps, top", [(40, 4), (5, 1), (1, 0)])
def test_slanted_rates_rise_for_a_tenth_of_the_steps_then_fall_to_a_32nd_of_the_peak(steps, top):
    rates = np.array([slanted_rate(step, steps, 0.64) for step in range(steps)])
    assert rates[0] == pytest.approx(0.02) and rates[-1] == pytest.approx(0.02)
    assert rates.max() == pytest.approx(0.64 if steps > 1 else 0.02) and rates.argmax() == top
    rising, falling = np.diff(rates[:top + 1]), np.diff(rates[top:])
    assert np.allclose(rising, rising[:1]) and np.allclose(falling, falling[:1]), "straight lines"
    assert (rising > 0).all() and (falling < 0).all()


def test_a_step_moves_each_weight_at_the_rate_set_for_it_where_params_allow_rates(model, tlx):
    """Adam's first step moves each weight by its rate times the sign of its gradient (where that is far
    above Adam's epsilon): the largest move of each weight is its rate."""
    from imdb_lstm import backend
    if backends.module(IN_PROCESS).set_rates is None:
        assert refuses_rate_schedules(IN_PROCESS), "a backend without set_rates: params.yaml must refuse rates"
        return
    assert not refuses_rate_schedules(IN_PROCESS)
    net = model.SentimentLSTM(30, 4, 3)
    spread_weights(tlx, net)
    before = weights_of(tlx, net)
    loss = tlx.model.WithLoss(net, tlx.losses.softmax_cross_entropy_with_logits)
    step = tlx.model.TrainOneStep(loss, tlx.optimizers.Adam(lr=0.5), net.trainable_weights)
    rates = {id(w): 0.001 * (i + 1) for i, w in enumerate(net.trainable_weights)}
    backend.set_rates(step, lambda weight: rates[id(weight)])
    step(tlx.convert_to_tensor(np.arange(12).reshape(3, 4)), tlx.convert_to_tensor(np.array([0, 1, 1])))
    moves = [np.abs(after - start).max() for after, start in zip(weights_of(tlx, net), before)]
    assert moves == pytest.approx(sorted(rates.values()), rel=1e-3)
