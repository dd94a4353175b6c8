"""Load params.yaml and check every key, and the rules across keys, before any heavy work."""
import difflib
import re
from pathlib import Path

import yaml

from imdb_lstm.backends import NAMES, schedules_rates, trains_adversarially, trains_in_processes
from imdb_lstm.errors import PipelineError, quote

MAX_BYTES = 1 << 16  # the project's params.yaml is about 2 KB

BACKENDS = NAMES  # imdb_lstm/backends/: one module per backend
POOLINGS = ("mean", "masked_mean", "max", "masked_mean_max", "last", "last_max_mean")  # see imdb_lstm/model.py
DEVICES = ("cpu", "gpu", "auto")


def _choice(*allowed):
    return lambda v: v in allowed, "one of " + ", ".join(allowed)


def _int_range(low, high):
    return lambda v: low <= v <= high, f"an integer from {low} to {high}"


# key: (type, check, what is allowed). A nested dict is a params.yaml section.
SCHEMA = {
    "backend": (str, *_choice(*BACKENDS)),
    "device": (str, *_choice(*DEVICES)),
    "reproducible": (bool, lambda v: True, "true or false"),
    "epochs": (int, *_int_range(1, 1000)),
    "batch_size": (int, *_int_range(1, 65536)),
    "lr": (float, lambda v: 0 < v <= 1, "a number above 0 and at most 1"),
    "seed": (int, *_int_range(0, 2**32 - 1)),
    "validation": (float, lambda v: 0 <= v <= 0.5, "a fraction from 0 (off) to 0.5"),
    "patience": (int, *_int_range(1, 1000)),
    "adversarial": (float, lambda v: 0 <= v <= 1, "a fraction from 0 (off) to 1"),
    "virtual_adversarial": (float, lambda v: 0 <= v <= 1, "a fraction from 0 (off) to 1"),
    "weight_average": (float, lambda v: 0 <= v < 1, "a decay from 0 (off) up to (not including) 1"),
    "data": {
        "url": (str, lambda v: re.match(r"(https?|file)://", v), "an http(s):// or file:// URL"),
        "sha256": (str, lambda v: re.fullmatch(r"[0-9a-f]{64}", v), "64 lower-case hex digits"),
        "vocab_size": (int, *_int_range(1, 1_000_000)),
        "seq_len": (int, *_int_range(1, 5000)),
        "truncate": (str, *_choice("pre", "post")),
        "pad": (str, *_choice("pre", "post")),
    },
    "pretrain": {
        "window": (int, *_int_range(1, 50)),
        "use": (bool, lambda v: True, "true or false"),
        "frozen_epochs": (int, *_int_range(0, 1000)),
        "fine_tune_lr": (float, lambda v: 0 < v <= 1, "a number above 0 and at most 1"),
    },
    "lm": {
        "use": (bool, lambda v: True, "true or false"),
        "epochs": (int, *_int_range(1, 1000)),
        "batch_size": (int, *_int_range(1, 65536)),
        "steps": (int, *_int_range(2, 5000)),
        "lr": (float, lambda v: 0 < v <= 1, "a number above 0 and at most 1"),
        "output_words": (int, *_int_range(3, 1_000_002)),
        "softmax": (str, *_choice("narrow", "tied")),
        "carry_state": (bool, lambda v: True, "true or false"),
        "dropout": (float, lambda v: 0 <= v < 1, "a number from 0 up to (not including) 1"),
        "schedule": (str, *_choice("constant", "slanted")),
        "frozen_epochs": (int, *_int_range(0, 1000)),
        "fine_tune_lr": (float, lambda v: 0 < v <= 1, "a number above 0 and at most 1"),
        "fine_tune": (str, *_choice("together", "ulmfit")),
    },
    "model": {
        "embedding_dim": (int, *_int_range(1, 4096)),
        "hidden_size": (int, *_int_range(1, 4096)),
        "bidirectional": (bool, lambda v: True, "true or false"),
        "num_layers": (int, *_int_range(1, 8)),
        "pooling": (str, *_choice(*POOLINGS)),
        "dropout": (float, lambda v: 0 <= v < 1, "a number from 0 up to (not including) 1"),
        "embedding_dropout": (float, lambda v: 0 <= v < 1, "a number from 0 up to (not including) 1"),
        "trim_padding": (bool, lambda v: True, "true or false"),
    },
    "distributed": {
        "processes": (int, *_int_range(1, 1024)),
        "comm": (str, *_choice("gloo", "nccl")),
    },
}


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, read as DVC reads params.yaml (YAML 1.2 numbers: `1e-3` is a float, not the
    string PyYAML 1.1 makes of it), and without aliases, which let a few hundred bytes stand for gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(None, None, "aliases (*name) are not accepted here",
                                                    event.start_mark)
        return super().compose_node(parent, index)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_params(path="params.yaml"):
    """Return params.yaml as a dict, or raise PipelineError naming the first bad key or rule."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: run the stage from the repository root") from None
    except OSError as error:
        raise PipelineError(f"cannot read {path}: {error.strerror}") from None
    if len(text) > MAX_BYTES:
        raise PipelineError(f"{path} is over {MAX_BYTES // 1024} KB: it is not this project's params file")
    try:
        params = yaml.load(text.decode("utf-8"), Loader=_Loader)
    except UnicodeDecodeError:
        raise PipelineError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as error:  # one line: the problem and where, not PyYAML's multi-line picture of it
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join((getattr(error, "problem", None) or str(error)).split())
        raise PipelineError(f"{path} is not valid YAML: {quote(problem, repr_=False)}{where}") from None
    check(params, SCHEMA, path)
    check_rules(params, path)
    return params


def check_rules(params, path):
    """The rules that join two keys."""
    data, model = params["data"], params["model"]
    if model["pooling"] in ("last", "last_max_mean") and data["pad"] != "pre":
        raise PipelineError(f"{path}: 'model.pooling' {model['pooling']} reads the LSTM's last step, which "
                            "'data.pad' post fills with padding: set data.pad to pre, or choose another pooling")
    if params["pretrain"]["use"] and model["embedding_dim"] >= data["vocab_size"]:
        # pretrain factorises a vocabulary-wide matrix to this width
        raise PipelineError(f"{path}: 'model.embedding_dim' {model['embedding_dim']} with pretrain.use must be "
                            f"below 'data.vocab_size' ({data['vocab_size']}): raise the vocabulary or narrow the "
                            "embedding")
    for key in ("adversarial", "virtual_adversarial"):
        if params[key] and not trains_adversarially(params["backend"]):
            able = [name for name in BACKENDS if trains_adversarially(name)]
            raise PipelineError(f"{path}: '{key}' training needs a gradient inside the training step's, which "
                                f"tlx's {params['backend']} step cannot take: use backend {', '.join(able[:-1])} "
                                f"or {able[-1]}, or set {key} to 0")
    lm = params["lm"]
    if lm["use"] and model["bidirectional"]:
        raise PipelineError(f"{path}: lm.use starts the LSTM from a language model, which reads one way: set "
                            "model.bidirectional to false, or lm.use to false")
    for key, plain in (("schedule", "constant"), ("fine_tune", "together")):
        if lm["use"] and lm[key] != plain and not schedules_rates(params["backend"]):
            able = [name for name in BACKENDS if schedules_rates(name)]
            raise PipelineError(f"{path}: 'lm.{key}' {lm[key]} changes the learning rate at every step, which tlx's "
                                f"{params['backend']} optimizer cannot: use backend {' or '.join(able)}, or set "
                                f"lm.{key} to {plain}")
    check_distributed(params, path)
    if lm["use"] and lm["softmax"] == "narrow" and lm["output_words"] > data["vocab_size"] + 2:
        raise PipelineError(f"{path}: 'lm.output_words' {lm['output_words']} is more than the "
                            f"{data['vocab_size'] + 2} word ids of 'data.vocab_size' {data['vocab_size']}: lower it, "
                            "or raise the vocabulary")


def check_distributed(params, path):
    """The rules of training in several processes."""
    distributed, lm = params["distributed"], params["lm"]
    processes = distributed["processes"]
    if processes > 1 and not trains_in_processes(params["backend"]):
        able = [name for name in BACKENDS if trains_in_processes(name)]
        raise PipelineError(f"{path}: 'distributed.processes' {processes} needs torchrun's process group, which "
                            f"backend {params['backend']} cannot join: use backend {' or '.join(able)}, or set "
                            "distributed.processes to 1")
    if processes > 1 and distributed["comm"] == "nccl" and params["device"] == "cpu":
        raise PipelineError(f"{path}: 'distributed.comm' nccl joins processes on GPUs, and 'device' is cpu: set "
                            "distributed.comm to gloo, or device to gpu")
    for key, size in (("batch_size", params["batch_size"]), ("lm.batch_size", lm["batch_size"] if lm["use"] else 0)):
        if 0 < size < processes:
            raise PipelineError(f"{path}: '{key}' {size} cannot be shared by 'distributed.processes' {processes}: "
                                f"raise {key} to {processes} or more, or lower distributed.processes")


def check(values, schema, path, prefix=""):
    if not isinstance(values, dict):
        raise PipelineError(f"{path}: {prefix.rstrip('.') or 'the file'} must be a mapping of keys to values")
    for key in values:
        if key not in schema:
            name = quote(f"{prefix}{key}", repr_=False)
            close = difflib.get_close_matches(str(key)[:200], list(schema), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise PipelineError(f"{path}: unknown key '{name}'{hint} (allowed: {', '.join(schema)})")
    for key, rule in schema.items():
        name = prefix + key
        if key not in values:
            raise PipelineError(f"{path}: missing key '{name}'")
        value = values[key]
        if isinstance(rule, dict):
            check(value, rule, path, name + ".")
            continue
        kind, ok, allowed = rule
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = values[key] = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool) or not ok(value):
            raise PipelineError(f"{path}: '{name}' is {quote(value)}; it must be {allowed}")
