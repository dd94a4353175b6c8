"""Classify new reviews with the trained model: `python -m imdb_lstm.predict "What a film!"`.

Reviews come from the arguments, from --file (one review per line) or from stdin (one per line).
Prints `label probability review` per review, or JSON with --json. Runs on either backend,
whichever trained the model.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from imdb_lstm import backend
from imdb_lstm.errors import PipelineError, run_stage
from imdb_lstm.metrics import log_softmax
from imdb_lstm.params import BACKENDS, DEVICES
from imdb_lstm.text import encode, tokenize


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m imdb_lstm.predict", description=__doc__.split("\n")[0])
    parser.add_argument("reviews", nargs="*", help="review texts (default: read --file or stdin)")
    parser.add_argument("--file", type=Path, help="a text file with one review per line")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="where to run (default: torch)")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="cpu, gpu or auto (default: cpu)")
    parser.add_argument("--model", type=Path, default=Path("data/model"), help="trained model folder")
    parser.add_argument("--vocab", type=Path, default=Path("data/prepared/vocab.json"), help="vocabulary file")
    return parser.parse_args(argv)


def read_reviews(args):
    if args.reviews:
        lines = args.reviews
    elif args.file:
        try:
            lines = args.file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise PipelineError(f"cannot read {args.file}: {error}") from None
    else:
        lines = sys.stdin.read().splitlines()
    reviews = [line.strip() for line in lines if line.strip()]
    if not reviews:
        raise PipelineError("no review to classify: give one as an argument, with --file, or on stdin")
    return reviews


def main(argv=None):
    args = parse_args(argv)
    reviews = read_reviews(args)
    try:
        vocab = json.loads(args.vocab.read_text())
    except FileNotFoundError:
        raise PipelineError(f"no vocabulary at {args.vocab}: run `dvc repro` (or `dvc pull`) first") from None
    backend.load(args.backend, args.device)
    from imdb_lstm.model import load, predict_logits

    net = load(args.model)
    ids = encode([tokenize(review) for review in reviews], vocab["words"][2:], **vocab["encoding"])
    positive = np.exp(log_softmax(predict_logits(net, ids))[:, 1])
    results = [{"label": "positive" if p > 0.5 else "negative", "probability": round(float(max(p, 1 - p)), 4),
                "review": review} for p, review in zip(positive, reviews)]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(f"{result['label']:8} {result['probability']:.4f}  {result['review']}")


if __name__ == "__main__":
    run_stage(main)
