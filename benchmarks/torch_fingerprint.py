"""Where torch's CPU results part between two machines: a hash of every op of one training step.

    python -m benchmarks.torch_fingerprint                    # a table: each op and the hash of its result
    python -m benchmarks.torch_fingerprint --write FILE.json  # the same, saved for another machine
    python -m benchmarks.torch_fingerprint --compare FILE.json   # each op: same bits as FILE's, or not

One step of the default model's shape (batch 64 × 200 words, embedding 20,002 × 64, LSTM 64, dense 64,
2 logits) in plain torch, loaded the way `reproducible: true` loads it (imdb_lstm.backend), from weights
and words that numpy draws (the same bits on every CPU): the forward ops in order, each weight's
gradient, then each weight after one Adam step. The first op that differs is where to look.
"""
import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

from imdb_lstm import backend

BATCH, WORDS, VOCAB, WIDTH = 64, 200, 20_002, 64


def fingerprint():
    """[(op, sha256 of its result's bytes, sum of its result)] for one training step, in order."""
    backend.load("torch", "cpu", reproducible=True)
    import torch

    rng = np.random.default_rng(0)
    embedding, lstm = torch.nn.Embedding(VOCAB, WIDTH), torch.nn.LSTM(WIDTH, WIDTH, batch_first=True)
    dense, classify = torch.nn.Linear(WIDTH, WIDTH), torch.nn.Linear(WIDTH, 2)
    layers = {"embedding": embedding, "lstm": lstm, "dense": dense, "classify": classify}
    with torch.no_grad():
        for layer in layers.values():
            for weight in layer.parameters():
                weight.copy_(torch.from_numpy(rng.normal(0, 0.1, tuple(weight.shape)).astype(np.float32)))
    ids = torch.from_numpy(rng.integers(2, VOCAB, (BATCH, WORDS)))
    labels = torch.from_numpy(rng.integers(0, 2, BATCH))
    results = []

    def record(op, tensor):
        array = tensor.detach().numpy()
        results.append((op, hashlib.sha256(array.tobytes()).hexdigest(), float(array.astype(np.float64).sum())))
        return tensor

    vectors = record("embedding", embedding(ids))
    states = record("lstm", lstm(vectors)[0])
    pooled = record("mean over time", states.mean(1))
    hidden = record("dense", dense(pooled))
    activated = record("relu", torch.relu(hidden))
    logits = record("classify", classify(activated))
    loss = record("cross entropy", torch.nn.functional.cross_entropy(logits, labels))
    loss.backward()
    weights = [(f"{name}.{key}", weight) for name, layer in layers.items() for key, weight in layer.named_parameters()]
    for name, weight in reversed(weights):  # in the order backward reaches them
        record(f"gradient of {name}", weight.grad)
    torch.optim.Adam([weight for _, weight in weights], lr=1e-3).step()
    for name, weight in weights:
        record(f"{name} after Adam", weight)
    return results


def compare(results, saved):
    """Rows (op, "same" / "differs" / "not in the file") against another machine's saved results."""
    theirs = {op: digest for op, digest, _ in saved["ops"]}
    return [(op, "not in the file" if op not in theirs else "same" if theirs[op] == digest else "differs")
            for op, digest, _ in results]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", type=Path, help="save this machine's hashes here (JSON)")
    parser.add_argument("--compare", type=Path, help="a file --write made on another machine")
    args = parser.parse_args()
    results = fingerprint()
    import torch

    machine = {"cpu": cpu_model(), "torch": torch.__version__, "python": platform.python_version()}
    if args.write:
        args.write.write_text(json.dumps({"machine": machine, "ops": results}, indent=1) + "\n")
    print(f"{machine['cpu']}, torch {machine['torch']}")
    if args.compare:
        saved = json.loads(args.compare.read_text())
        rows = compare(results, saved)
        print(f"against {saved['machine']['cpu']}, torch {saved['machine']['torch']} ({args.compare})\n")
        print("| op | bits |\n| --- | --- |")
        print("\n".join(f"| {op} | {verdict} |" for op, verdict in rows))
        first = next((op for op, verdict in rows if verdict != "same"), None)
        print(f"\nfirst op that differs: {first}" if first else "\nevery op gives the same bits")
    else:
        print("| op | sha256 | sum |\n| --- | --- | --- |")
        print("\n".join(f"| {op} | {digest[:16]} | {total:.9g} |" for op, digest, total in results))


def cpu_model():
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
