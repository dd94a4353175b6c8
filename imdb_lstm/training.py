"""What training is made of, for the classifier and the language model: the loss that counts correct
predictions, adversarial and virtual adversarial losses, the seeded batch order, the Adam step, the validation
hold-out, the embedding's start from pretrained vectors, the moving average of the weights, the rate schedule.
The functions take the tlx module that `imdb_lstm.backend.load(...)` returned.
"""
import contextlib
import math

import numpy as np

from imdb_lstm import backend
from imdb_lstm.errors import PipelineError
from imdb_lstm.metrics import log_softmax
from imdb_lstm.text import PAD, lengths, trim_padding


def start_from_vectors(net, vectors):
    """Set the embedding to pretrained word vectors, one row per word id (stages/pretrain.py)."""
    expected = tuple(net.embedding.all_weights[0].shape)
    if vectors.shape != expected:
        raise PipelineError(f"the pretrained vectors are {vectors.shape}, the embedding {expected}: "
                            f"rerun `dvc repro pretrain` with this params.yaml")
    backend.tlx().files.assign_weights([vectors], net.embedding)


class CountingLoss:
    """Softmax cross-entropy that also counts the batch's correct predictions and keeps the batch's loss,
    so train accuracy and loss come from the same forward pass as the gradient step (on the reviews as
    they are: an adversarial step's extra loss is not in them)."""

    def __init__(self, tlx):
        self.tlx = tlx
        self.correct = 0
        self.last_loss = None

    def __call__(self, logits, labels):
        predicted = self.tlx.convert_to_numpy(self.tlx.argmax(logits, axis=1))
        self.correct += int((predicted == self.tlx.convert_to_numpy(labels)).sum())
        loss = self.tlx.losses.softmax_cross_entropy_with_logits(logits, labels)
        self.last_loss = float(self.tlx.convert_to_numpy(loss))
        return loss


class AdversarialLoss:
    """Adversarial training on the word vectors (Miyato, Dai & Goodfellow 2017): the batch's loss plus its
    loss once every review's vectors are pushed the way that raises that loss fastest. The push of a
    review has `epsilon` times the L2 norm of its vectors (all its words together), so growing the
    embedding cannot shrink it; a model that must keep its answer under it leans on more than a few words."""

    def __init__(self, tlx, net, loss_fn, epsilon):
        self.tlx, self.net, self.loss_fn, self.epsilon = tlx, net, loss_fn, epsilon

    def __call__(self, ids, labels):
        def loss_at(vectors):  # the reviews as they are: loss_fn counts them
            return self.loss_fn(self.net.read(vectors, ids), labels)

        def pushed_loss_at(vectors):
            return self.tlx.losses.softmax_cross_entropy_with_logits(self.net.read(vectors, ids), labels)

        return backend.adversarial_objective(loss_at, pushed_loss_at, self.net.embed(ids), self.push)

    def push(self, gradient, vectors):
        """Each review's push: along the loss's gradient, `epsilon` times the norm of its vectors."""
        return _push_along(self.tlx, self.epsilon, gradient, vectors)


class VirtualAdversarialLoss:
    """Virtual adversarial training on unlabelled reviews (Miyato, Dai & Goodfellow 2017): the labelled
    batch's loss (`labelled_loss`: plain or AdversarialLoss) plus, for a batch of unlabelled reviews, the KL
    divergence of the model's answer on them pushed from its answer on them as they are. The push is the
    way that changes the answer fastest (one power iteration from a random `direction`, a unit vector per
    review), with `epsilon` times the norm of each review's vectors, as AdversarialLoss's; no label needed."""

    def __init__(self, tlx, net, labelled_loss, epsilon):
        self.tlx, self.net, self.labelled_loss, self.epsilon = tlx, net, labelled_loss, epsilon

    def __call__(self, ids, labels, unlabelled, direction):
        return self.labelled_loss(ids, labels) + self.virtual_loss(unlabelled, direction)

    def virtual_loss(self, ids, direction):
        tlx = self.tlx
        with backend.no_grad():  # the model's own answer, through numpy: a constant on every backend
            answer = log_softmax(tlx.convert_to_numpy(self.net(ids)).astype(np.float64))
        probabilities, answer = tlx.convert_to_tensor(np.exp(answer)), tlx.convert_to_tensor(answer)

        def divergence_at(vectors):  # mean KL(answer || answer at vectors), in float64: the two differ little
            logits = tlx.cast(self.net.read(vectors, ids), tlx.float64)
            top = tlx.reduce_max(logits, axis=1, keepdims=True)
            log_q = logits - top - tlx.log(tlx.reduce_sum(tlx.exp(logits - top), axis=1, keepdims=True))
            return tlx.cast(tlx.reduce_mean(tlx.reduce_sum(probabilities * (answer - log_q), axis=1)), tlx.float32)

        vectors = self.net.embed(ids)
        # the power iteration's start: a step along `direction` too small to change the answer much (a constant)
        norms = np.sqrt((tlx.convert_to_numpy(vectors).astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True))
        step = (FINITE_STEP * norms * tlx.convert_to_numpy(direction)).astype(np.float32)
        start = vectors + tlx.convert_to_tensor(step)
        return backend.adversarial_objective(divergence_at, divergence_at, start, self.push)

    def push(self, gradient, vectors):
        return _push_along(self.tlx, self.epsilon, gradient, vectors)


FINITE_STEP = 1e-3  # of each review's norm: where VirtualAdversarialLoss takes the divergence's gradient


def _push_along(tlx, epsilon, gradient, vectors):
    """Each review's push: along `gradient`, `epsilon` times the norm of the review's vectors."""
    return epsilon * _review_norms(tlx, vectors) * gradient / (_review_norms(tlx, gradient) + 1e-12)


def _review_norms(tlx, x):
    """The L2 norm of each review's (words, features) block of x, shaped (reviews, 1, 1)."""
    return tlx.sqrt(tlx.reduce_sum(tlx.reduce_sum(x * x, axis=2, keepdims=True), axis=1, keepdims=True))


class WeightAverage:
    """An exponential moving average of the net's weights after each step (Polyak averaging): the weights
    of t steps ago count `decay`**t as much as the last step's, and the weights before the first step not at
    all (the average is divided by the sum of those factors, as Adam debiases its moments; so with decay
    0.998 the last 500 steps hold 63 % of it). Averaged weights smooth out the last steps' noise; Miyato, Dai
    & Goodfellow's IMDB code evaluates such an average. Kept in numpy, one IEEE operation at a time: the
    same bits on any CPU. `total` and `values` resume a saved average."""

    def __init__(self, tlx, net, decay, total=0.0, values=None):
        self.tlx, self.net, self.decay, self.total = tlx, net, decay, total
        self.values = values if values is not None else [np.array(tlx.convert_to_numpy(w)) for w in net.all_weights]

    def update(self):
        # the mean's recurrence: the sum of the factors so far is `total`; the first step's rate is 1
        self.total = self.decay * self.total + (1 - self.decay)
        rate = (1 - self.decay) / self.total
        for value, weight in zip(self.values, self.net.all_weights):
            value += rate * (self.tlx.convert_to_numpy(weight) - value)

    @contextlib.contextmanager
    def in_place(self):
        """The net holds the averaged weights inside the block, its own again after it."""
        own = [np.array(self.tlx.convert_to_numpy(w)) for w in self.net.all_weights]  # copies: torch's share
        self.tlx.files.assign_weights([value.copy() for value in self.values], self.net)
        try:
            yield
        finally:
            self.tlx.files.assign_weights(own, self.net)


def batch_order(review_lengths, batch_size, rng, by_length):
    """The epoch's batches (index arrays) in a seeded random order. `by_length` sorts each window of
    50 batches by review length first, so a batch holds reviews of similar length and little padding."""
    order = rng.permutation(len(review_lengths))
    window = batch_size * 50 if by_length else len(order)
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        if by_length:
            chunk = chunk[np.argsort(review_lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))] if by_length else batches


def unlabelled_batches(ids, count, batch_size, rng, trim, width):
    """`count` (rows, direction) pairs for VirtualAdversarialLoss: batches of the unlabelled `ids` in a
    seeded order (trimmed, as model.ClassifierTask does the labelled ones; the order starts again when
    they run out), each with a random unit direction per review, (rows, words, width), zero on padding."""
    review_lengths, made = lengths(ids), 0
    while made < count:
        for batch in batch_order(review_lengths, batch_size, rng, by_length=trim)[:count - made]:
            rows = trim_padding(ids[batch]) if trim else ids[batch]
            direction = rng.standard_normal((*rows.shape, width)).astype(np.float32) * (rows != PAD)[..., None]
            norms = np.sqrt((direction.astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True))
            yield rows, (direction / np.maximum(norms, 1e-12)).astype(np.float32)
            made += 1


def make_step(tlx, net, loss_fn, weights, lr, frozen=(), adversarial=0.0, virtual_adversarial=0.0):
    """An Adam step over `weights`; the weights of the `frozen` layers are left out and get no gradient.
    With `adversarial` > 0 it descends AdversarialLoss with that epsilon; with `virtual_adversarial` > 0,
    VirtualAdversarialLoss too (the step then takes an unlabelled batch and its directions after the labels)."""
    kept = {id(w) for layer in frozen for w in layer.all_weights}
    for weight in weights:
        backend.set_trainable(weight, id(weight) not in kept)
    with_loss = AdversarialLoss(tlx, net, loss_fn, adversarial) if adversarial else tlx.model.WithLoss(net, loss_fn)
    if virtual_adversarial:
        with_loss = VirtualAdversarialLoss(tlx, net, with_loss, virtual_adversarial)
    return tlx.model.TrainOneStep(with_loss, tlx.optimizers.Adam(lr=lr), [w for w in weights if id(w) not in kept])


RISE, LOWEST = 0.1, 1 / 32  # Howard & Ruder 2018's slanted triangle: its share of the steps rising, its floor


def slanted_rate(step, steps, peak):
    """The learning rate of step `step` (from 0) of `steps` on a slanted triangle (Howard & Ruder 2018,
    ULMFiT): from peak / 32 up to `peak` over the first tenth of the steps, then down to peak / 32 at the last."""
    top = max(1, math.floor(steps * RISE))
    height = step / top if step < top else (steps - 1 - step) / max(1, steps - 1 - top)
    return peak * (LOWEST + (1 - LOWEST) * height)


MIN_HELD_OUT = 100  # reviews on either side of the validation split: fewer make early stopping noise


def hold_out(ids, labels, fraction, seed):
    """(train ids, train labels, (validation ids, labels) or None): a seeded split of the training set."""
    if not fraction:
        return ids, labels, None
    held_count = round(len(ids) * fraction)
    if min(held_count, len(ids) - held_count) < MIN_HELD_OUT:
        raise PipelineError(f"validation {fraction} holds out {held_count} of {len(ids)} training reviews; "
                            f"early stopping needs at least {MIN_HELD_OUT} on each side: raise or lower "
                            "`validation`, or set it to 0")
    order = np.random.default_rng([seed, 1]).permutation(len(ids))  # its own stream: shuffling is unchanged
    held = order[:held_count]
    kept = np.sort(order[held_count:])
    return ids[kept], labels[kept], (ids[held], labels[held])
