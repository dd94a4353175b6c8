"""The language model, in the test process: its files, and a classifier that starts from it.

tlx runs in the test process, on the backend IMDB_TEST_BACKEND names (torch if unset); test_backends.py
runs these files once more on each other installed backend. A mutation tool sees only what runs in its own
process (TESTING.md): these tests let it see the backend-facing code run.
"""
import json
import shutil

import numpy as np
import pytest
from conftest import IN_PROCESS
from helpers import weights_of

from imdb_lstm import backend, backends
from imdb_lstm.errors import PipelineError

WORDS = ["<pad>", "<unk>", "great", "film", "awful", "plot", "the"]


@pytest.fixture
def language_model(tlx, model):
    import imdb_lstm.language_model as language_model
    return language_model


@pytest.fixture
def saved_lm(language_model, tmp_path):
    from imdb_lstm.text import words_sha256
    backend.seed(3)
    net = language_model.LanguageModel(len(WORDS), 4, 3, 1, output_words=5)
    folder = tmp_path / "lm"
    folder.mkdir()
    language_model.save_lm(net, folder, words_sha256=words_sha256(WORDS))
    return folder, net


def test_the_lm_is_saved_with_its_config_and_vocabulary(language_model, saved_lm):
    from imdb_lstm.text import words_sha256
    folder, net = saved_lm
    info = {**net.config, "trained_on": backend.version(), "words_sha256": words_sha256(WORDS)}
    assert (folder / "lm.json").read_text() == json.dumps(info, indent=2, sort_keys=True) + "\n"
    assert info["vocab_size"] == len(WORDS) and info["output_words"] == 5


def test_the_lm_gives_each_word_logits_over_its_output_words(language_model, tlx):
    net = language_model.LanguageModel(len(WORDS), 4, 3, 2, output_words=5)
    assert [tuple(w.shape) for w in net.embedding.all_weights + net.output.all_weights] == [(7, 4), (3, 5), (5,)]
    assert len(net.lstm.all_weights) == 8, "two layers of 4 tensors each, all there before the first batch"
    net.set_eval()
    ids = np.random.default_rng(0).integers(0, len(WORDS), (2, 6))
    logits = tlx.convert_to_numpy(net(tlx.convert_to_tensor(ids))).reshape(2, 6, 5)
    changed = ids.copy()
    changed[0, 3] = (ids[0, 3] + 1) % len(WORDS)
    after = tlx.convert_to_numpy(net(tlx.convert_to_tensor(changed))).reshape(2, 6, 5)
    # row by row, each step from the words up to it: a later word changes neither the earlier steps nor the other row
    np.testing.assert_array_equal(after[0, :3], logits[0, :3])
    np.testing.assert_array_equal(after[1], logits[1])
    assert not np.allclose(after[0, 3:], logits[0, 3:])


def test_the_classifier_takes_the_lms_embedding_and_lstm(model, tlx, language_model, saved_lm):
    folder, lm = saved_lm
    net = model.SentimentLSTM(len(WORDS), 4, 3)
    head = weights_of(tlx, net)[-4:]
    language_model.start_from_lm(net, folder, WORDS)
    shared = len(lm.embedding.all_weights) + len(lm.lstm.all_weights)
    for mine, theirs in zip(weights_of(tlx, net)[:shared], weights_of(tlx, lm)[:shared], strict=True):
        assert (mine == theirs).all()
    assert all((a == b).all() for a, b in zip(weights_of(tlx, net)[-4:], head))  # the rest is as it was


@pytest.mark.parametrize("how, message", [
    ("missing", "no language model in {folder}: run `dvc repro lm` with lm.use true"),
    ("other words", "the language model in {folder} was trained on another vocabulary: rerun `dvc repro lm`"),
    ("wider", "the language model in {folder} (vocab_size 7, embedding_dim 4, hidden_size 3, num_layers 1) does "
     "not fit the classifier (vocab_size 7, embedding_dim 4, hidden_size 5, num_layers 1, bidirectional false): the "
     "classifier must have its sizes and read one way; rerun `dvc repro lm` with this params.yaml"),
    ("bidirectional", "the language model in {folder} (vocab_size 7, embedding_dim 4, hidden_size 3, num_layers 1) "
     "does not fit the classifier (vocab_size 7, embedding_dim 4, hidden_size 3, num_layers 1, bidirectional true)"),
    ("not JSON", "{folder}/lm.json is damaged (Expecting property name enclosed in double quotes: line 1 column 2 "
     "(char 1)): rerun `dvc repro lm`"),
    ("weights of another shape", "{folder}/weights.npz does not fit lm.json: rerun `dvc repro lm`"),
    ("NaN weights", "{folder}/weights.npz holds NaN or infinite weights: rerun `dvc repro lm`"),
    ("weights not a zip", "{folder}/weights.npz is damaged (File is not a zip file): rerun `dvc repro lm`"),
])
def test_a_language_model_that_does_not_fit_is_refused(model, tlx, language_model, saved_lm, how, message):
    from imdb_lstm.files import write_npz
    folder, lm = saved_lm
    words, options = WORDS, {}
    if how == "missing":
        shutil.rmtree(folder)
    elif how == "other words":
        words = WORDS[:-1] + ["a"]
    elif how == "wider":
        options = {"hidden_size": 5}
    elif how == "bidirectional":
        options = {"bidirectional": True}
    elif how == "not JSON":
        (folder / "lm.json").write_text("{")
    elif how == "weights not a zip":
        (folder / "weights.npz").write_bytes(b"PK")
    else:
        weights = weights_of(tlx, lm)
        weights[1 if how == "weights of another shape" else 0] = (weights[1][:-1] if how == "weights of another shape"
                                                                  else weights[0] * np.nan)
        write_npz(folder / "weights.npz", weights)
    net = model.SentimentLSTM(len(WORDS), 4, options.pop("hidden_size", 3), **options)
    with pytest.raises(PipelineError) as error:
        language_model.start_from_lm(net, folder, words)
    assert str(error.value).startswith(message.format(folder=folder))


def test_the_review_streams_hold_out_two_percent_of_the_reviews_in_a_seeded_order(language_model):
    documents = [np.full(i % 7 + 1, i) for i in range(120)]
    stream, held = language_model.review_streams(documents, seed=5)
    order = np.random.default_rng([5, 2]).permutation(120)
    assert stream.dtype == held.dtype == np.int64
    assert held.tolist() == np.concatenate([documents[i] for i in order[:2]]).tolist(), "round(2.4) reviews"
    assert stream.tolist() == np.concatenate([documents[i] for i in order[2:]]).tolist()
    assert language_model.review_streams(documents[:3], 0)[1].size == documents[
        np.random.default_rng([0, 2]).permutation(3)[0]].size, "at least one review is held out"
    with pytest.raises(PipelineError, match="needs at least two reviews, the archive has 1"):
        language_model.review_streams(documents[:1], 0)
    assert sorted(part.size for part in language_model.review_streams(documents[:2], 0)) == [1, 2], "one each side"


def test_windows_cut_the_stream_into_rows_and_their_next_words(language_model):
    rows, next_words = language_model.windows(np.arange(23), 5, "training")
    assert rows.tolist() == [list(range(i, i + 5)) for i in range(0, 20, 5)], "the tail that fills no row is left"
    assert (next_words == rows + 1).all()
    assert language_model.windows(np.arange(6), 5, "held-out")[0].tolist() == [[0, 1, 2, 3, 4]]
    with pytest.raises(PipelineError) as refused:
        language_model.windows(np.arange(5), 5, "held-out")
    assert str(refused.value) == ("the held-out reviews hold 5 words, not enough for one row of lm.steps 5: "
                                  "lower lm.steps")
    assert language_model.targets(np.array([0, 3, 4, 9]), 5).tolist() == [0, 3, 4, 4], "rarer words: one class"


def lm_task(language_model, **options):
    rng = np.random.default_rng(4)
    rows, held = rng.integers(0, len(WORDS), (10, 4)), rng.integers(0, len(WORDS), (3, 4))
    backend.seed(1)
    net = language_model.LanguageModel(len(WORDS), 4, 3, 1, output_words=5)
    return language_model.LanguageModelTask(net, rows, np.roll(rows, -1), held, np.roll(held, -1), **{
        "epochs": 1, "batch_size": 4, "lr": 0.01, "seed": 0, **options})


def test_an_lm_epoch_takes_every_row_once_and_scores_the_held_out_next_words(language_model, tlx):
    from imdb_lstm.loop import fit
    task = lm_task(language_model, lr=0.0)  # the weights stay: the figures are the start's
    batches = task.batches(np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(10)) and [len(b) for b in batches] == [4, 4, 2]
    task.net.set_eval()

    def log_probabilities(rows, next_words):
        logits = tlx.convert_to_numpy(task.net(tlx.convert_to_tensor(rows))).astype(np.float64)
        wanted = language_model.targets(next_words, 5).ravel()
        shifted = logits - logits.max(1, keepdims=True)
        return (shifted - np.log(np.exp(shifted).sum(1, keepdims=True)))[np.arange(len(wanted)), wanted], \
            logits.argmax(1) == wanted
    held, right = log_probabilities(task.held_rows, task.held_next_words)
    train, train_right = log_probabilities(task.rows, task.next_words)
    published = []
    fit(task, None, "", published.append)
    record, = published[0].log
    assert record.held_out == {"perplexity": round(float(np.exp(-held.mean())), 4),
                               "next_word_accuracy": round(right.mean(), 6)}
    assert record.loss == pytest.approx(-train.mean(), rel=1e-5), "every next word counts once"
    assert record.accuracy == round(train_right.mean(), 6)
    assert lm_task(language_model, batch_size=2).held_out() == record.held_out, "batch by batch, each row once"


def test_lanes_cut_the_stream_into_equal_parts_that_batches_read_side_by_side(language_model):
    rows, next_words, count = language_model.lanes(np.arange(50), 3, 4, "training")
    assert count == 3 and rows.shape == (9, 4) and (next_words == rows + 1).all()
    batches = language_model.lane_batches(len(rows), count)
    assert [b.tolist() for b in batches] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    for lane in range(3):  # 16 words a lane: its rows in order, batch after batch
        assert np.concatenate([rows[b[lane]] for b in batches]).tolist() == list(range(16 * lane, 16 * lane + 12))
    assert language_model.lanes(np.arange(12), 5, 4, "training")[2] == 2, "as many lanes as hold a row"
    assert language_model.lanes(np.arange(10), 5, 4, "training")[2] == 2, "5 words a lane: 4, and the next"
    rows, next_words, count = language_model.lanes(np.arange(12), 0, 4, "training")
    windows = language_model.windows(np.arange(12), 4, "training")
    assert (rows.tolist(), next_words.tolist(), count) == (windows[0].tolist(), windows[1].tolist(), 0)
    for count in (3, 0):
        with pytest.raises(PipelineError, match="^the held-out reviews hold 4 words, not enough for one row"):
            language_model.lanes(np.arange(4), count, 4, "held-out")


def logits_of(tlx, net, ids):
    return tlx.convert_to_numpy(net(tlx.convert_to_tensor(ids)))


@pytest.mark.parametrize("softmax", ["narrow", "tied"])
def test_an_lm_that_carries_its_state_reads_a_stream_in_windows_as_in_one_pass(language_model, tlx, softmax):
    ids = np.random.default_rng(0).integers(0, len(WORDS), (2, 8))
    nets = {}
    for carry in (True, False):
        backend.seed(2)
        nets[carry] = language_model.LanguageModel(len(WORDS), 4, 3, 2, 5, softmax, carry_state=carry)
        nets[carry].set_eval()
    whole = logits_of(tlx, nets[True], ids).reshape(2, 8, -1)
    nets[True].carried = None
    windows = [logits_of(tlx, nets[True], ids[:, :4]), logits_of(tlx, nets[True], ids[:, 4:])]
    np.testing.assert_allclose(np.concatenate([w.reshape(2, 4, -1) for w in windows], axis=1), whole, atol=1e-6)
    fresh = logits_of(tlx, nets[False], ids[:, 4:]).reshape(2, 4, -1)
    assert np.abs(fresh - whole[:, 4:]).max() > 1e-3 * np.abs(whole).max(), "without it the window starts over"
    np.testing.assert_array_equal(logits_of(tlx, nets[False], ids[:, :4]), windows[0])


def test_the_tied_softmax_scores_every_word_by_its_embedding_vector_and_bias(language_model, tlx):
    backend.seed(0)
    net = language_model.LanguageModel(len(WORDS), 4, 3, 1, output_words=5, softmax="tied")
    assert net.config["output_words"] == len(WORDS) and net.config["softmax"] == "tied"
    layers = [net.embedding, net.lstm, net.project, net.word_bias]  # in all_weights' order: the classifier
    assert [id(w) for w in net.all_weights] == [id(w) for layer in layers for w in layer.all_weights]  # reads the first
    net.set_eval()
    ids = np.array([[2, 3, 4, 2]])  # neither word 5 nor 6
    before = logits_of(tlx, net, ids)
    weights = [tlx.convert_to_numpy(w) for w in net.all_weights]
    weights[0][6] *= 2  # word 6's vector: it is read nowhere, it only scores word 6
    weights[-1][5] += 1.0
    tlx.files.assign_weights(weights, net)
    after = logits_of(tlx, net, ids)
    np.testing.assert_allclose(after[:, 5], before[:, 5] + 1.0, atol=1e-6)
    np.testing.assert_allclose(after[:, 6], before[:, 6] * 2, atol=1e-6)
    np.testing.assert_array_equal(after[:, :5], before[:, :5])


def lane_task(language_model, softmax="tied", dropout=0.0, **options):
    rng = np.random.default_rng(4)
    rows, next_words, count = language_model.lanes(rng.integers(0, len(WORDS), 60), 3, 4, "training")
    held, held_next, held_count = language_model.lanes(rng.integers(0, len(WORDS), 30), 3, 4, "held-out")
    backend.seed(1)
    net = language_model.LanguageModel(len(WORDS), 4, 3, 1, 5, softmax, dropout, carry_state=True)
    return language_model.LanguageModelTask(net, rows, next_words, held, held_next, **{
        "epochs": 1, "batch_size": 3, "lr": 0.01, "seed": 0, "lanes": count, "held_lanes": held_count, **options})


def test_a_carrying_lm_scores_held_out_lanes_as_one_pass_over_each(language_model, tlx):
    task = lane_task(language_model)
    task.net.set_eval()
    for layer in (task.net.embedding, task.net.lstm):  # larger weights: the state the rows carry matters more
        tlx.files.assign_weights([w * 5 for w in weights_of(tlx, layer)], layer)

    def perplexity(rows, wanted):
        wanted = wanted.ravel()
        task.net.carried = None
        logits = logits_of(tlx, task.net, rows).astype(np.float64)
        shifted = logits - logits.max(1, keepdims=True)
        return float(np.exp(-(shifted - np.log(np.exp(shifted).sum(1, keepdims=True)))[
            np.arange(len(wanted)), wanted].mean()))
    per_lane = len(task.held_rows) // task.held_lanes
    one_pass = perplexity(task.held_rows.reshape(task.held_lanes, per_lane * 4), task.held_next_words)
    task.net.carry_state = False
    each_row_alone = perplexity(task.held_rows, task.held_next_words)
    task.net.carry_state = True
    assert abs(one_pass - each_row_alone) > 1e-3
    task.net.carried = "left by training"  # held_out starts from zeros, and leaves zeros
    assert task.held_out()["perplexity"] == pytest.approx(one_pass, abs=1e-4)
    assert task.net.carried is None


@pytest.mark.parametrize("carry_state", [False, True])
def test_an_lm_stopped_within_an_epoch_resumes_from_its_last_checkpoint_as_if_never_stopped(
        language_model, tlx, tmp_path, carry_state):
    """A carried state starts from zeros at each checkpoint, so a resumed run can match."""
    from imdb_lstm.loop import fit

    def run(folder, stop_at=None):
        task, started = (lane_task if carry_state else lm_task)(language_model, epochs=2), []
        task.checkpoint_steps = 2  # of the 3 (4 in lanes) steps an epoch
        inputs = task.inputs

        def stopped_at(epoch, batches, start, part):  # Ctrl-C as step `stop_at` is about to start
            for step_inputs in inputs(epoch, batches, start, part):
                started.append(task.net.carried is None)
                if len(started) == stop_at:
                    raise KeyboardInterrupt
                yield step_inputs
        task.inputs = stopped_at
        published = []
        fit(task, folder, "lm", published.append)
        return published[0].log, weights_of(tlx, task.net), started

    straight, straight_weights, started = run(None)
    steps = len(started) // 2
    assert started == ([True, False, True, False] if carry_state else [True] * 3) * 2
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "checkpoint", stop_at=2 * steps)  # epoch 2 keeps a checkpoint after its 2nd step
    resumed, resumed_weights, started = run(tmp_path / "checkpoint")
    assert started == ([True, False] if carry_state else [True]), "epoch 2 from its 3rd step on"
    assert resumed == straight
    assert all(np.array_equal(a, b) for a, b in zip(straight_weights, resumed_weights))
    assert not (tmp_path / "checkpoint").exists(), "a finished language model keeps no checkpoint"


def test_an_lm_with_dropout_drops_while_training_only(language_model, tlx):
    task = lane_task(language_model, dropout=0.5)
    assert task.uses_dropout and not lane_task(language_model).uses_dropout
    ids = task.rows[:3]
    task.net.set_train()
    task.net.carried = None
    trained = logits_of(tlx, task.net, ids)
    task.net.set_eval()
    evaluated = []
    for _ in range(2):
        task.net.carried = None
        evaluated.append(logits_of(tlx, task.net, ids))
    np.testing.assert_array_equal(*evaluated)
    assert not np.allclose(trained, evaluated[0])


def test_a_slanted_lm_schedule_gives_every_weight_the_step_s_rate(language_model):
    from imdb_lstm.training import slanted_rate
    task = lane_task(language_model, epochs=2, lr_schedule="slanted")
    rate_of = task.schedule(2, 3, 10)
    weights = list(task.net.trainable_weights)
    assert [rate_of(w) for w in weights] == [slanted_rate(13, 20, 0.01)] * len(weights)
    assert lane_task(language_model).schedule(1, 0, 10) is None, "constant: the step's own rate"


def test_the_tied_softmax_in_bfloat16_gives_float32_logits_near_full_precision_ones(language_model, tlx):
    """What a GPU runs, on the CPU (where torch has bfloat16 products too); a backend without mixed precision
    gives the full-precision bits."""
    nets = []
    for mixed in ({}, {"mixed_precision": True}):  # full precision unless asked (stages/lm.py: on a GPU)
        backend.seed(0)
        nets.append(language_model.LanguageModel(len(WORDS), 16, 8, 1, 5, "tied", **mixed))
    ids = np.random.default_rng(0).integers(0, len(WORDS), (2, 6))
    full, mixed = logits_of(tlx, nets[0], ids), nets[1](tlx.convert_to_tensor(ids))
    if backends.module(IN_PROCESS).mixed_precision is None:
        np.testing.assert_array_equal(tlx.convert_to_numpy(mixed), full)
        return
    loss = tlx.losses.softmax_cross_entropy_with_logits(mixed, tlx.convert_to_tensor(np.zeros(12, np.int64)))
    assert tlx.convert_to_numpy(mixed).dtype == np.float32 and np.isfinite(tlx.convert_to_numpy(loss))
    difference = np.abs(tlx.convert_to_numpy(mixed) - full)
    assert 0 < difference.max() < 0.05 * np.abs(full).max(), "bfloat16's rounding, no more"


def test_held_out_perplexity_takes_each_words_own_largest_logit_where_words_differ_by_thousands(language_model, tlx):
    """Logits thousands apart from one word to the next, each word the most likely: a perplexity of 1. A shift
    by the largest logit of the whole batch would round the smaller words' probabilities to 0."""
    backend.seed(0)
    net = language_model.LanguageModel(len(WORDS), 4, 3, 1, output_words=5)
    rng = np.random.default_rng(1)
    tlx.files.assign_weights([(rng.normal(size=(3, 5)) * 3e4).astype(np.float32), np.zeros(5, np.float32)],
                             net.output)
    net.set_eval()
    rows = rng.integers(0, len(WORDS), (2, 4))
    logits = logits_of(tlx, net, rows)
    assert np.ptp(logits.max(axis=1)) > 2000
    next_words = logits.argmax(axis=1).reshape(2, 4)  # the classes are the word ids below output_words
    task = language_model.LanguageModelTask(net, rows, next_words, rows, next_words, epochs=1, batch_size=2,
                                            lr=0.01, seed=0)
    assert task.held_out() == {"perplexity": 1.0, "next_word_accuracy": 1.0}
