"""Classify new reviews with the trained model: `imdb-predict "What a film!"`.

Reviews come from the arguments, from --file (one review per line) or from stdin (one per line).
Prints `label probability review` per review, or JSON with --json. Runs on either backend,
whichever trained the model.
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from imdb_lstm import backend
from imdb_lstm.errors import PipelineError, quote, run_stage
from imdb_lstm.metrics import log_softmax
from imdb_lstm.model import load_model, predict_logits
from imdb_lstm.params import BACKENDS, DEVICES, SCHEMA, check
from imdb_lstm.text import encode

ENCODING_SCHEMA = {key: SCHEMA["data"][key] for key in ("seq_len", "truncate", "pad")}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="imdb-predict", description=__doc__.split("\n")[0])
    parser.add_argument("reviews", nargs="*", help="review texts (default: read --file or stdin)")
    parser.add_argument("--file", type=Path, help="a text file with one review per line")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="where to run (default: torch)")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="cpu, gpu or auto (default: cpu)")
    parser.add_argument("--model", type=Path, default=Path("data/model"), help="trained model folder")
    parser.add_argument("--vocab", type=Path, default=Path("data/prepared/vocab.json"), help="vocabulary file")
    return parser.parse_args(argv)


def read_reviews(args):
    """The reviews as text, whatever the locale: bytes that are not UTF-8 become U+FFFD, never an error."""
    if args.reviews:  # argv was decoded with the locale's codec, undecodable bytes kept as surrogates
        lines = [review.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for review in args.reviews]
    elif args.file:
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
        raise PipelineError(f"no vocabulary at {path}: run `dvc repro` (or `dvc pull`) first") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"{path} is not a vocabulary written by `dvc repro prepare` "
                            f"({quote(str(error), repr_=False)})") from None


def main(argv=None):
    args = parse_args(argv)
    sys.stdout.reconfigure(errors="replace")  # a review's characters that the terminal's codec lacks
    reviews = read_reviews(args)
    words, encoding, vocabulary = read_vocabulary(args.vocab)
    backend.load(args.backend, args.device)
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
    else:
        for result in results:
            print(f"{result['label']:8} {result['probability']:.4f}  {result['review']}")


def cli():
    """The installed `imdb-predict` command."""
    run_stage(main, lock=False)  # reads only: it may run while a stage trains


if __name__ == "__main__":
    cli()
