"""Classify new reviews with the trained model: `imdb-predict "What a film!"`.

Reviews come from the arguments, from --file (one review per line; `-`: stdin) or from stdin (one per
line); with none of them and stdin a terminal it prints its usage and exits with 2. Prints `label
probability review` per review, or JSON with --json, or one JSON object a line with --jsonl. Runs on the
backend that trained the model unless --backend names another (a model loads on every backend).
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from imdb_lstm import backend
from imdb_lstm.errors import PipelineError, get_it_by, quote, run_stage
from imdb_lstm.metrics import log_softmax
from imdb_lstm.model import load_model, predict_logits, trained_backend
from imdb_lstm.params import BACKENDS, DEVICES, SCHEMA, check
from imdb_lstm.text import encode

ENCODING_SCHEMA = {key: SCHEMA["data"][key] for key in ("seq_len", "truncate", "pad")}


def make_parser():
    parser = argparse.ArgumentParser(prog="imdb-predict", description=__doc__.split("\n")[0])
    parser.add_argument("reviews", nargs="*", help="review texts (default: read --file or stdin)")
    parser.add_argument("--file", type=Path, help="a text file with one review per line (-: stdin)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    output.add_argument("--jsonl", action="store_true", help="print one JSON object a line (JSON Lines)")
    parser.add_argument("--backend", choices=BACKENDS, help="where to run (default: the one that trained the model)")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="cpu, gpu or auto (default: cpu)")
    parser.add_argument("--model", type=Path, default=Path("data/model"), help="trained model folder")
    parser.add_argument("--vocab", type=Path, default=Path("data/prepared/vocab.json"), help="vocabulary file")
    return parser


def parse_args(argv):
    """The options; usage and exit 2 where no review can come (no argument, no --file, stdin a terminal)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if not args.reviews and args.file is None and sys.stdin is not None and sys.stdin.isatty():
        parser.error("no review to classify: give one as an argument, with --file, or on stdin")
    return args


def read_reviews(args):
    """The reviews as text, whatever the locale: bytes that are not UTF-8 become U+FFFD, never an error."""
    if args.reviews:  # argv was decoded with the locale's codec, undecodable bytes kept as surrogates
        lines = [review.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for review in args.reviews]
    elif args.file and str(args.file) != "-":
        try:
            lines = args.file.read_bytes().decode("utf-8", "replace").splitlines()
        except OSError as error:
            raise PipelineError(f"cannot read {args.file}: {error.strerror}") from None
    else:
        lines = sys.stdin.buffer.read().decode("utf-8", "replace").splitlines()
    reviews = [line.strip() for line in lines if line.strip()]
    if not reviews:
        raise PipelineError("no review to classify: give one as an argument, with --file, or on stdin")
    return reviews


def read_vocabulary(path):
    """(words, encoding options, sha256) of a vocab.json written by the prepare stage."""
    try:
        data = path.read_bytes()
        vocab = json.loads(data)
        encoding = {key: vocab["encoding"][key] for key in ENCODING_SCHEMA}
        check(encoding, ENCODING_SCHEMA, path, "encoding.")
        if not all(isinstance(word, str) for word in vocab["words"]):
            raise ValueError("a word that is not a string")
        return vocab["words"][2:], encoding, hashlib.sha256(data).hexdigest()
    except FileNotFoundError:
        raise PipelineError(f"no vocabulary at {path}: run {get_it_by('prepare')} first") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"{path} is not a vocabulary written by `dvc repro prepare` "
                            f"({quote(str(error), repr_=False)})") from None


def main(argv=None):
    args = parse_args(argv)
    sys.stdout.reconfigure(errors="replace")  # a review's characters that the terminal's codec lacks
    reviews = read_reviews(args)
    words, encoding, vocabulary = read_vocabulary(args.vocab)
    backend.load(args.backend or trained_backend(args.model) or "torch", args.device)
    net = load_model(args.model)
    if net.vocabulary not in (None, vocabulary):
        raise PipelineError(f"{args.vocab} is not the vocabulary {args.model} was trained with: run `dvc repro`, "
                            "or pass that model's --vocab")
    ids = encode(reviews, words, **encoding)
    positive = np.exp(log_softmax(predict_logits(net, ids))[:, 1])
    results = [{"label": "positive" if p > 0.5 else "negative", "probability": round(float(max(p, 1 - p)), 4),
                "review": review} for p, review in zip(positive, reviews)]
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.jsonl:
        for result in results:
            print(json.dumps(result, ensure_ascii=False))
    else:
        for result in results:
            print(f"{result['label']:8} {result['probability']:.4f}  {result['review']}")


def cli():
    """The installed `imdb-predict` command."""
    run_stage(main, lock=False)  # reads only: it may run while a stage trains


if __name__ == "__main__":
    cli()
