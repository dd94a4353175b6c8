"""imdb_lstm.predict, in the test process: labels, probabilities, and what it refuses.

tlx runs in the test process, on the backend IMDB_TEST_BACKEND names (torch if unset); test_backends.py
runs these files once more on each other installed backend. A mutation tool sees only what runs in its own
process (TESTING.md): these tests let it see the backend-facing code run.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import IN_PROCESS
from helpers import spread_weights, weights_of

from imdb_lstm.errors import PipelineError


@pytest.fixture
def trained(model, tlx, tmp_path):
    """A model folder and the vocab.json it was 'trained' with: random weights, with the bias set so that
    "great film" comes out positive and "awful plot twist" negative."""
    from imdb_lstm.files import sha256_file, write_json
    vocab = tmp_path / "vocab.json"
    write_json(vocab, {"encoding": {"seq_len": 6, "truncate": "pre", "pad": "pre"},
                       "words": ["<pad>", "<unk>", "great", "film", "awful", "plot"]})
    net = model.SentimentLSTM(6, 4, 3)
    spread_weights(tlx, net, seed=7)
    net.set_eval()
    margins = np.diff(model.predict_logits(net, np.array(REVIEW_IDS)), axis=1)[:, 0]
    assert margins[0] > margins[1] + 0.2, "the seed must tell the two reviews apart"
    kernel, bias = weights_of(tlx, net.classify)
    tlx.files.assign_weights([kernel, bias + np.array([0, -margins.mean()], np.float32)], net.classify)
    folder = tmp_path / "model"
    folder.mkdir()
    model.save_model(net, folder, vocabulary=sha256_file(vocab))
    return ["--model", str(folder), "--vocab", str(vocab), "--backend", IN_PROCESS], net


REVIEWS = ["great film", "awful plot twist"]
REVIEW_IDS = [[0, 0, 0, 0, 2, 3], [0, 0, 0, 4, 5, 1]]  # as vocab.json's words and encoding give them


def expected_lines(model, net, reviews, ids):
    from imdb_lstm.metrics import log_softmax
    net.set_eval()
    positive = np.exp(log_softmax(model.predict_logits(net, np.array(ids)))[:, 1])
    return [("positive" if p > 0.5 else "negative", round(float(max(p, 1 - p)), 4), review)
            for p, review in zip(positive, reviews)]


def test_predict_prints_a_label_and_its_probability_per_review(model, trained, capsys):
    from imdb_lstm import predict
    options, net = trained
    predict.main([*REVIEWS, *options])
    lines = capsys.readouterr().out.splitlines()
    expected = expected_lines(model, net, REVIEWS, REVIEW_IDS)
    assert [label for label, _, _ in expected] == ["positive", "negative"]
    assert lines == [f"{label:8} {probability:.4f}  {review}" for label, probability, review in expected]
    predict.main(["--json", *REVIEWS, *options])
    assert capsys.readouterr().out == json.dumps([{"label": label, "probability": probability, "review": review}
                                                  for label, probability, review in expected], indent=2) + "\n"


def test_predict_calls_an_even_review_negative(model, tlx, trained, capsys):
    from imdb_lstm import predict
    options, net = trained
    tlx.files.assign_weights([np.zeros((3, 2), np.float32), np.zeros(2, np.float32)], net.classify)
    model.save_model(net, options[1], vocabulary=model.load_model(options[1]).vocabulary)
    predict.main(["great film", *options])
    assert capsys.readouterr().out == "negative 0.5000  great film\n", "positive only above one half"


def test_predict_reads_a_file_or_stdin_one_review_a_line(trained, tmp_path, capsys, monkeypatch):
    import io

    from imdb_lstm import predict
    options, _ = trained
    reviews = tmp_path / "reviews.txt"
    reviews.write_bytes(b"great film\n\n  \nawful \xff plot\n")
    predict.main(["--file", str(reviews), *options])
    assert [line.split("  ", 1)[1] for line in capsys.readouterr().out.splitlines()] == ["great film",
                                                                                         "awful \ufffd plot"]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"film\n\xffplot\n")))
    predict.main(options)
    assert [line.split("  ", 1)[1] for line in capsys.readouterr().out.splitlines()] == ["film", "\ufffdplot"]
    # an argument the locale could not decode (Python keeps its bytes as surrogates)
    predict.main(["great \udcff film", *options])
    assert capsys.readouterr().out.endswith("  great \ufffd film\n")


def test_predict_reads_stdin_for_file_dash_and_prints_json_lines(trained, capsys, monkeypatch):
    import io

    from imdb_lstm import predict
    options, _ = trained
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("great film\nawful plot twist été\n".encode())))
    predict.main(["--file", "-", "--jsonl", *options])
    lines = capsys.readouterr().out.splitlines()
    predict.main(["--json", "great film", "awful plot twist été", *options])
    assert [json.loads(line) for line in lines] == json.loads(capsys.readouterr().out)
    assert lines[1].endswith('"review": "awful plot twist été"}'), "one line each, as written"


class Terminal:
    """stdin as a terminal where nobody types."""

    def isatty(self):
        return True


def test_without_reviews_and_with_a_terminal_for_stdin_predict_shows_its_usage_and_exits_2(
        trained, capsys, monkeypatch):
    from imdb_lstm import predict
    options, _ = trained
    monkeypatch.setattr("sys.stdin", Terminal())
    with pytest.raises(SystemExit) as stopped:
        predict.main(options)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: imdb-predict") and err.endswith(
        "imdb-predict: error: no review to classify: give one as an argument, with --file, or on stdin\n")
    predict.main(["great film", *options])  # a review given: the terminal is not read
    assert capsys.readouterr().out.startswith("positive")


def test_predict_runs_on_the_backend_that_trained_the_model_unless_told_another(model, trained, tmp_path, capsys):
    from imdb_lstm import predict
    options, _ = trained
    folder, without_backend = Path(options[1]), options[:4]
    assert model.trained_backend(folder) == IN_PROCESS
    predict.main(["great film", *without_backend])
    assert capsys.readouterr().out.startswith("positive")
    info = json.loads((folder / "model.json").read_text())
    other = next(name for name in ("torch", "paddle") if name != IN_PROCESS)
    (folder / "model.json").write_text(json.dumps({**info, "trained_on": f"{other} 1.0"}))
    with pytest.raises(PipelineError, match=f"^backend {IN_PROCESS} is loaded already"):  # it asked for `other`
        predict.main(["great film", *without_backend])
    predict.main(["great film", *without_backend, "--backend", IN_PROCESS])
    assert capsys.readouterr().out.startswith("positive")
    (folder / "model.json").write_text(json.dumps({**info, "trained_on": "mxnet 1.9"}))  # none of ours: torch
    if IN_PROCESS == "torch":
        predict.main(["great film", *without_backend])
        assert capsys.readouterr().out.startswith("positive")
    else:
        with pytest.raises(PipelineError, match=f"^backend {IN_PROCESS} is loaded already"):
            predict.main(["great film", *without_backend])
    for trained_on, expected in [("paddle 3.3.1", "paddle"), ("mxnet 1.9", None), (7, None)]:
        (folder / "model.json").write_text(json.dumps({**info, "trained_on": trained_on}))
        assert model.trained_backend(folder) == expected
    assert model.trained_backend(tmp_path / "nowhere") is None, "load_model says what is missing"


def test_predict_prints_what_the_terminal_cannot_show_as_question_marks(trained, monkeypatch):
    import io

    from imdb_lstm import predict
    options, _ = trained
    terminal = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(terminal, encoding="ascii"))
    predict.main(["great film \u00e9t\u00e9", *options])
    sys.stdout.flush()
    assert terminal.getvalue().decode("ascii").endswith("  great film ?t?\n")


def test_predict_refuses_with_one_line_what_it_cannot_use(trained, tmp_path, monkeypatch):
    import io

    from imdb_lstm import predict
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\n  \n")))  # blank lines: no review
    from imdb_lstm.files import write_json
    options, _ = trained
    folder, vocab = options[1], Path(options[3])
    cases = [
        ([], "no review to classify: give one as an argument, with --file, or on stdin"),
        (["--file", str(tmp_path / "none.txt")], f"cannot read {tmp_path / 'none.txt'}: No such file or directory"),
        (["x", "--vocab", str(tmp_path / "none.json")],
         f"no vocabulary at {tmp_path / 'none.json'}: run `dvc repro prepare` first"),
    ]
    other = tmp_path / "other.json"
    write_json(other, {"encoding": {"seq_len": 6, "truncate": "pre", "pad": "pre"}, "words": ["<pad>", "<unk>", "x"]})
    cases.append((["x", "--vocab", str(other)], f"{other} is not the vocabulary {folder} was trained with: run "
                                                 "`dvc repro`, or pass that model's --vocab"))
    not_prepares = "is not a vocabulary written by `dvc repro prepare`"
    for name, content, why in [
            ("word.json", {"words": ["a", 1], "encoding": {"seq_len": 6, "truncate": "pre", "pad": "pre"}},
             f"{{bad}} {not_prepares} (a word that is not a string)"),
            ("seq_len.json", {"words": ["a"], "encoding": {"seq_len": 0, "truncate": "pre", "pad": "pre"}},
             "{bad}: 'encoding.seq_len' is 0; it must be an integer from 1 to 5000"),
            ("encoding.json", {"words": ["a"]}, f"{{bad}} {not_prepares} ('encoding')")]:
        bad = tmp_path / name
        write_json(bad, content)
        cases.append((["x", "--vocab", str(bad)], why.format(bad=bad)))
    for argv, message in cases:
        if "--vocab" not in argv:
            argv = [*argv, "--vocab", str(vocab)]
        with pytest.raises(PipelineError) as refused:
            predict.main([*argv, "--model", folder, "--backend", IN_PROCESS])
        assert str(refused.value) == message, argv


def test_predict_options_their_defaults_and_their_help(capsys, monkeypatch):
    from imdb_lstm import predict
    assert vars(predict.parse_args(["a"])) == {"reviews": ["a"], "file": None, "json": False, "jsonl": False,
                                               "backend": None, "device": "cpu", "model": Path("data/model"),
                                               "vocab": Path("data/prepared/vocab.json")}
    given = predict.parse_args(["a b", "c", "--file", "in.txt", "--json", "--backend", "paddle", "--device", "auto",
                                "--model", "m", "--vocab", "v.json"])
    assert vars(given) == {"reviews": ["a b", "c"], "file": Path("in.txt"), "json": True, "jsonl": False,
                           "backend": "paddle", "device": "auto", "model": Path("m"), "vocab": Path("v.json")}
    for argv, message in [(["--backend", "mxnet"], "argument --backend: invalid choice: 'mxnet'"),
                          (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
                          (["--json", "--jsonl", "a"], "argument --jsonl: not allowed with argument --json")]:
        with pytest.raises(SystemExit):
            predict.parse_args(argv)
        assert message in capsys.readouterr().err
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as done:
        predict.parse_args(["--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # line breaks depend on the terminal
    for line in ["usage: imdb-predict [-h]",
                 "Classify new reviews with the trained model: `imdb-predict \"What a film!\"`.",
                 "reviews review texts (default: read --file or stdin)",
                 "--file FILE a text file with one review per line (-: stdin)",
                 "--json print a JSON list instead of lines",
                 "--jsonl print one JSON object a line (JSON Lines)",
                 "--backend {torch,paddle,tensorflow,mindspore} where to run (default: the one that trained the "
                 "model)",
                 "--device {cpu,gpu,auto} cpu, gpu or auto (default: cpu)",
                 "--model MODEL trained model folder",
                 "--vocab VOCAB vocabulary file"]:
        assert line in shown
    assert "Reviews come from" not in shown, "the description is the docstring's first line"


def test_the_installed_command_runs_beside_a_stage_and_fails_with_one_line(trained, tmp_path, capsys, monkeypatch):
    """`imdb-predict` only reads, so a stage holding the checkout's lock (training) does not stop it."""
    import fcntl
    import signal

    from imdb_lstm import errors, predict
    options, _ = trained
    monkeypatch.chdir(tmp_path)
    handlers = {name: signal.getsignal(name) for name in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open(errors.LOCK, "a+") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            monkeypatch.setattr(sys, "argv", ["imdb-predict", "great film", *options])
            predict.cli()
            assert capsys.readouterr().out.startswith("positive ")
        monkeypatch.setattr(sys, "argv", ["imdb-predict", "x", *options[:2], "--vocab", "none.json"])
        with pytest.raises(SystemExit) as failed:
            predict.cli()
    finally:
        for name, handler in handlers.items():
            signal.signal(name, handler)
    assert failed.value.code == 1
    assert capsys.readouterr().err == "error: no vocabulary at none.json: run `dvc repro prepare` first\n"
