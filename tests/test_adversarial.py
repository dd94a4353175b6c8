"""Adversarial and virtual adversarial training steps, in the test process.

tlx runs in the test process, on the backend IMDB_TEST_BACKEND names (torch if unset); test_backends.py
runs these files once more on each other installed backend. A mutation tool sees only what runs in its own
process (TESTING.md): these tests let it see the backend-facing code run.
"""

import numpy as np
import pytest
from conftest import IN_PROCESS
from helpers import spread_weights, weights_of

from imdb_lstm import backends


def test_a_step_is_adversarial_only_when_asked(model, tlx):
    from imdb_lstm.training import AdversarialLoss, CountingLoss, make_step
    rng = np.random.default_rng(2)
    ids, labels = tlx.convert_to_tensor(rng.integers(1, 30, (8, 5))), tlx.convert_to_tensor(rng.integers(0, 2, 8))
    moved = []
    for plain in (True, False):
        net = model.SentimentLSTM(30, 4, 8)
        spread_weights(tlx, net)
        if plain:
            step = tlx.model.TrainOneStep(tlx.model.WithLoss(net, CountingLoss(tlx)), tlx.optimizers.Adam(lr=0.1),
                                          list(net.trainable_weights))
        else:
            step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), lr=0.1)
        net.set_train()
        step(ids, labels)
        moved.append(weights_of(tlx, net))
    for a, b in zip(*moved):
        np.testing.assert_array_equal(a, b)
    if IN_PROCESS != "mindspore":
        step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), lr=0.1, adversarial=0.25)
        assert isinstance(step.net_with_train.net_with_loss, AdversarialLoss)
        assert step.net_with_train.net_with_loss.epsilon == 0.25


def record_pushes(tlx, adversarial_loss):
    """Keep each (gradient, push) that `adversarial_loss` makes, as arrays."""
    made, push = [], adversarial_loss.push

    def recorded(gradient, vectors):
        made.append((tlx.convert_to_numpy(gradient), tlx.convert_to_numpy(push(gradient, vectors))))
        return push(gradient, vectors)

    adversarial_loss.push = recorded
    return made


def test_an_adversarial_step_descends_the_loss_plus_the_loss_at_the_pushed_vectors(model, tlx):
    """With plain gradient descent at rate 1 a step moves each weight by minus its gradient: the adversarial
    step's move must be the sum of a plain step's and of a step on the loss at the pushed vectors (the push
    taken as a constant, as it is in the step). A push subtracted, or a loss counted twice or not at all,
    moves the weights elsewhere."""
    if IN_PROCESS == "mindspore":  # params.py refuses it there (no skip: test_backends.py wants none on a backend)
        assert backends.get(IN_PROCESS).adversarial_objective is None
        return
    from imdb_lstm.training import AdversarialLoss, CountingLoss
    rng = np.random.default_rng(0)
    ids, labels = tlx.convert_to_tensor(rng.integers(1, 30, (8, 5))), tlx.convert_to_tensor(rng.integers(0, 2, 8))

    def move(net_with_loss):
        net = net_with_loss.net
        before = weights_of(tlx, net)
        step = tlx.model.TrainOneStep(net_with_loss, tlx.optimizers.SGD(lr=1.0), list(net.trainable_weights))
        net.set_train()
        step(ids, labels)
        return [after - old for after, old in zip(weights_of(tlx, net), before)]

    class Plain:
        def __init__(self, push=None):
            self.net = model.SentimentLSTM(30, 4, 8, pooling="masked_mean_max")
            spread_weights(tlx, self.net)  # the same start for every net
            self.push = push

        def __call__(self, ids, labels):
            vectors = self.net.embed(ids)
            if self.push is not None:
                vectors = vectors + tlx.convert_to_tensor(self.push)
            return tlx.losses.softmax_cross_entropy_with_logits(self.net.read(vectors, ids), labels)

    adversarial = AdversarialLoss(tlx, Plain().net, CountingLoss(tlx), 0.5)
    made = record_pushes(tlx, adversarial)
    moved = move(adversarial)
    expected = [a + b for a, b in zip(move(Plain()), move(Plain(made[0][1])))]
    for got, want in zip(moved, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(move(Plain()), expected)) > 1e-3, "the push moved the weights"


def test_the_adversarial_push_has_its_size_and_raises_the_loss_more_than_a_random_one(model, tlx):
    if IN_PROCESS == "mindspore":  # params.py refuses it there (no skip: test_backends.py wants none on a backend)
        assert backends.get(IN_PROCESS).adversarial_objective is None
        return
    from imdb_lstm.training import CountingLoss, make_step
    rng = np.random.default_rng(1)
    ids, labels = rng.integers(1, 30, (6, 7)), rng.integers(0, 2, 6)
    ids[0, :3] = 0  # padding: it is read, and pushed, as in training without trim_padding
    net = model.SentimentLSTM(30, 4, 8, pooling="masked_mean_max")
    spread_weights(tlx, net)
    step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), lr=0.0, adversarial=0.05)
    made = record_pushes(tlx, step.net_with_train.net_with_loss)
    net.set_train()
    step(tlx.convert_to_tensor(ids), tlx.convert_to_tensor(labels))
    vectors = tlx.convert_to_numpy(net.embed(tlx.convert_to_tensor(ids)))
    gradient, pushed = made[0]
    assert pushed.shape == vectors.shape
    norms = np.sqrt((pushed.astype(np.float64) ** 2).sum((1, 2)))
    assert norms == pytest.approx(0.05 * np.sqrt((vectors.astype(np.float64) ** 2).sum((1, 2))), rel=1e-4)
    # along each review's whole gradient (not each word's): one factor a review
    factors = (pushed * gradient).sum((1, 2)) / (gradient * gradient).sum((1, 2))
    np.testing.assert_allclose(pushed, factors[:, None, None] * gradient, rtol=1e-4, atol=1e-7)

    def review_losses(vectors):
        logits = tlx.convert_to_numpy(net.read(tlx.convert_to_tensor(vectors.astype(np.float32)),
                                               tlx.convert_to_tensor(ids))).astype(np.float64)
        shifted = logits - logits.max(1, keepdims=True)
        return np.log(np.exp(shifted).sum(1)) - shifted[range(len(ids)), labels]

    clean = review_losses(vectors)
    noise = rng.normal(size=vectors.shape)
    noise *= (norms / np.sqrt((noise ** 2).sum((1, 2))))[:, None, None]
    assert (review_losses(vectors + pushed) > review_losses(vectors + noise)).all()
    assert (review_losses(vectors + pushed) > clean).all()


def test_unlabelled_batches_are_trimmed_seeded_and_come_with_a_unit_direction_off_the_padding():
    from imdb_lstm.training import unlabelled_batches
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 30, (5, 9))
    ids[:, :3] = 0  # padding shared by every review: trimmed
    ids[1, :6] = 0
    made = list(unlabelled_batches(ids, 4, 2, np.random.default_rng(7), True, 3))
    assert len(made) == 4, "three batches make one pass over five reviews; the fourth starts the next pass"
    assert sorted(len(rows) for rows, _ in made[:3]) == [1, 2, 2]
    for rows, direction in made:
        assert direction.shape == (*rows.shape, 3) and direction.dtype == np.float32
        assert rows.shape[1] < 9 or (rows[:, :3] != 0).any(), "the shared padding is gone"
        assert (direction[rows == 0] == 0).all() and (direction[rows != 0] != 0).all()
        np.testing.assert_allclose(np.sqrt((direction.astype(np.float64) ** 2).sum((1, 2))), 1.0, rtol=1e-6)
    again = list(unlabelled_batches(ids, 4, 2, np.random.default_rng(7), True, 3))
    for (rows, direction), (rows_again, direction_again) in zip(made, again):
        np.testing.assert_array_equal(rows, rows_again)
        np.testing.assert_array_equal(direction, direction_again)
    seen = np.concatenate([rows[:, -1] for rows, _ in made[:3]])
    assert sorted(seen) == sorted(ids[:, -1]), "the first pass holds every review once"


@pytest.mark.parametrize("trim", [True, False])
def test_unlabelled_batches_follow_batch_order_and_draw_each_direction_in_float32(trim):
    """The batches batch_order makes from the same generator (by length and trimmed, or as they are), then
    per batch a float32 normal draw, zero on padding, scaled to length 1 per review: a one-word review of
    width 1 gets +1 or -1, though most such draws are shorter than 1."""
    from imdb_lstm.text import PAD
    from imdb_lstm.training import batch_order, lengths, trim_padding, unlabelled_batches
    ids = np.zeros((8, 6), dtype=np.int64)
    for i in range(8):
        ids[i, 5 - i % 3:] = 5 + i  # one to three words, after three columns of padding every review has
    made = list(unlabelled_batches(ids, 4, 2, np.random.default_rng(3), trim, 1))
    rng = np.random.default_rng(3)
    for (rows, direction), batch in zip(made, batch_order(lengths(ids), 2, rng, trim), strict=True):
        np.testing.assert_array_equal(rows, trim_padding(ids[batch]) if trim else ids[batch])
        draw = rng.standard_normal((*rows.shape, 1)).astype(np.float32) * (rows != PAD)[..., None]
        unit = draw / np.sqrt((draw.astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True))
        np.testing.assert_array_equal(direction, unit.astype(np.float32))
    one_word = [direction[i] for rows, direction in made for i in range(len(rows)) if (rows[i] != PAD).sum() == 1]
    assert one_word and all(np.abs(d).max() == 1 for d in one_word)


def virtual_setup(tlx, seed=0):
    """(ids, labels, unlabelled ids, their directions) as tensors: what a virtual adversarial step takes."""
    from imdb_lstm.training import unlabelled_batches
    rng = np.random.default_rng(seed)
    ids, labels, unlabelled = rng.integers(1, 30, (8, 5)), rng.integers(0, 2, 8), rng.integers(2, 30, (6, 7))
    unlabelled[0, :2] = 0
    (_, direction), = unlabelled_batches(unlabelled, 1, 6, rng, False, 4)
    return [tlx.convert_to_tensor(a) for a in (ids, labels, unlabelled, direction)]


def divergences(tlx, net, unlabelled, vectors, answer_vectors):
    """Each unlabelled review's KL(answer at answer_vectors || answer at vectors), in float64 numpy."""
    def log_probabilities(v):
        logits = tlx.convert_to_numpy(net.read(tlx.convert_to_tensor(v.astype(np.float32)), unlabelled))
        shifted = logits.astype(np.float64) - logits.max(1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    p, q = log_probabilities(answer_vectors), log_probabilities(vectors)
    return (np.exp(p) * (p - q)).sum(1)


def test_a_virtual_adversarial_step_descends_the_labelled_loss_plus_the_divergences_at_its_two_points(model, tlx):
    """At SGD rate 1 the step's move must be a plain step's plus one on the mean KL divergence of the
    unlabelled reviews' answers at the power iteration's start and one at the pushed vectors (the model's
    own answer, the start and the push taken as constants). The divergence subtracted, taken from the pushed
    answer instead of the model's own, or counted twice or not at all moves the weights elsewhere."""
    if IN_PROCESS == "mindspore":  # params.py refuses it there (no skip: test_backends.py wants none on a backend)
        assert backends.get(IN_PROCESS).adversarial_objective is None
        return
    from imdb_lstm.training import FINITE_STEP, CountingLoss, VirtualAdversarialLoss
    ids, labels, unlabelled, direction = virtual_setup(tlx)

    def new_net():
        net = model.SentimentLSTM(30, 4, 8, pooling="masked_mean_max")
        spread_weights(tlx, net, seed=5)  # the same start for every net
        return net

    def move(net, loss, *inputs):
        before = weights_of(tlx, net)
        net.set_train()
        tlx.model.TrainOneStep(loss, tlx.optimizers.SGD(lr=1.0), list(net.trainable_weights))(*inputs)
        return [after - old for after, old in zip(weights_of(tlx, net), before)]

    net = new_net()
    virtual = VirtualAdversarialLoss(tlx, net, tlx.model.WithLoss(net, CountingLoss(tlx)), 0.5)
    made = record_pushes(tlx, virtual)
    moved = move(net, virtual, ids, labels, unlabelled, direction)
    vectors = tlx.convert_to_numpy(new_net().embed(unlabelled)).astype(np.float64)
    offset = FINITE_STEP * np.sqrt((vectors ** 2).sum((1, 2), keepdims=True)) * tlx.convert_to_numpy(direction)

    clean = tlx.convert_to_numpy(new_net()(unlabelled)).astype(np.float64)
    clean -= clean.max(1, keepdims=True)
    answer = clean - np.log(np.exp(clean).sum(1, keepdims=True))  # the model's own, before the step

    class Divergence:  # the mean KL divergence from `answer` at the vectors moved by a constant `offset`
        def __init__(self, offset):
            self.net, self.offset = new_net(), tlx.convert_to_tensor(offset.astype(np.float32))

        def __call__(self, unlabelled, _):
            logits = tlx.cast(self.net.read(self.net.embed(unlabelled) + self.offset, unlabelled), tlx.float64)
            top = tlx.reduce_max(logits, axis=1, keepdims=True)
            log_q = logits - top - tlx.log(tlx.reduce_sum(tlx.exp(logits - top), axis=1, keepdims=True))
            kl = tlx.reduce_sum(tlx.convert_to_tensor(np.exp(answer)) * (tlx.convert_to_tensor(answer) - log_q), axis=1)
            return tlx.cast(tlx.reduce_mean(kl), tlx.float32)

    plain_net = new_net()
    plain = move(plain_net, tlx.model.WithLoss(plain_net, CountingLoss(tlx)), ids, labels)
    at_start, at_pushed = Divergence(offset), Divergence(offset + made[0][1])
    expected = [a + b + c for a, b, c in zip(plain, move(at_start.net, at_start, unlabelled, labels),
                                             move(at_pushed.net, at_pushed, unlabelled, labels))]
    for got, want in zip(moved, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(plain, expected)) > 1e-3, "the unlabelled reviews moved the weights"


def test_the_virtual_adversarial_push_has_its_size_and_changes_the_answer_more_than_a_random_one(model, tlx):
    if IN_PROCESS == "mindspore":  # params.py refuses it there (no skip: test_backends.py wants none on a backend)
        assert backends.get(IN_PROCESS).adversarial_objective is None
        return
    from imdb_lstm.training import CountingLoss, make_step
    ids, labels, unlabelled, direction = virtual_setup(tlx, seed=1)
    net = model.SentimentLSTM(30, 4, 8, pooling="masked_mean_max")
    spread_weights(tlx, net)
    step = make_step(tlx, net, CountingLoss(tlx), list(net.trainable_weights), lr=0.0, virtual_adversarial=0.05)
    made = record_pushes(tlx, step.net_with_train.net_with_loss)
    net.set_train()
    step(ids, labels, unlabelled, direction)
    assert len(made) == 1, "one push a step, for the unlabelled reviews (no adversarial push unless asked)"
    vectors = tlx.convert_to_numpy(net.embed(unlabelled)).astype(np.float64)
    gradient, pushed = made[0]
    assert pushed.shape == vectors.shape
    norms = np.sqrt((pushed.astype(np.float64) ** 2).sum((1, 2)))
    assert norms == pytest.approx(0.05 * np.sqrt((vectors ** 2).sum((1, 2))), rel=1e-3)
    factors = (pushed * gradient).sum((1, 2)) / (gradient * gradient).sum((1, 2))
    np.testing.assert_allclose(pushed, factors[:, None, None] * gradient, rtol=1e-4, atol=1e-7)
    noise = np.random.default_rng(4).normal(size=vectors.shape)
    noise *= (norms / np.sqrt((noise ** 2).sum((1, 2))))[:, None, None]
    pushed_away = divergences(tlx, net, unlabelled, vectors + pushed, vectors)
    assert (pushed_away > divergences(tlx, net, unlabelled, vectors + noise, vectors)).all()
    assert (pushed_away > 1e-6).all(), "every review's answer moved"


def test_the_divergence_stays_finite_where_the_reviews_logits_are_far_apart(model, tlx):
    """Each review's own largest logit keeps exp in range: with answers a thousand apart from one review
    to the next, one maximum over the batch would take exp of all of a review's logits to 0."""
    if IN_PROCESS == "mindspore":  # params.py refuses it there
        return
    from imdb_lstm.training import VirtualAdversarialLoss
    _, _, unlabelled, direction = virtual_setup(tlx)
    net = model.SentimentLSTM(30, 4, 8)
    spread_weights(tlx, net, seed=5)
    kernel, bias = weights_of(tlx, net.classify)
    tlx.files.assign_weights([kernel * 1e5, bias], net.classify)
    logits = tlx.convert_to_numpy(net(unlabelled))
    assert np.ptp(logits.max(axis=1)) > 1000, "the reviews' answers must be far apart"
    loss = VirtualAdversarialLoss(tlx, net, None, 0.5).virtual_loss(unlabelled, direction)
    assert np.isfinite(tlx.convert_to_numpy(loss))
