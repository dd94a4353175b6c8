"""benchmarks/gpu_recipe.py, the GPU run's one call, here on the CPU at a tiny size: every stage of dvc.yaml
in order by its own command, the seeds after the first from the same language model, and the record."""
import json
import subprocess
import sys

import yaml
from conftest import ROOT
from project import prepared_repo

from imdb_lstm.files import sha256_file

TINY = ["device=cpu", "data.vocab_size=50", "data.seq_len=24", "model.embedding_dim=8", "model.hidden_size=8",
        "lm.epochs=2", "lm.batch_size=4", "lm.steps=8", "lm.lr=0.01", "lm.fine_tune_lr=0.01", "epochs=3",
        "batch_size=20", "lr=0.01", "validation=0.5"]


def run_recipe(repo, out, *args):
    return subprocess.run([sys.executable, "benchmarks/gpu_recipe.py", "--repo", str(repo.path), "--out", str(out),
                           *args], cwd=ROOT, env=repo.env, capture_output=True, text=True, timeout=600)


def test_the_recipe_runs_every_stage_then_train_and_evaluate_per_seed_and_records_them(tmp_path):
    repo, out = prepared_repo(tmp_path / "work"), tmp_path / "out"
    done = run_recipe(repo, out, "--seeds", "1", "2", *[arg for setting in TINY for arg in ("-S", setting)])
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((out / "stages.json").read_text())
    assert list(record["stages"]) == ["fetch", "prepare", "pretrain", "lm", "train", "evaluate", "report",
                                      "train (seed 2)", "evaluate (seed 2)", "report (seed 2)"]
    assert record["command"].startswith("dvc exp run -S backend=torch -S device=cpu -S epochs=3 -S batch_size=20 ")
    assert "-S lm.fine_tune=ulmfit" in record["command"] and record["command"].endswith(" -S seed=1")
    params = yaml.safe_load((out / "params.yaml").read_text())  # the last seed's
    assert (params["seed"], params["lm"]["fine_tune"], params["model"]["hidden_size"]) == (2, "ulmfit", 8)
    assert len(json.loads((out / "lm.json").read_text())["log"]) == 2, "one language model, for both seeds"
    scores = {}
    for seed in (1, 2):
        train, scored = (json.loads((out / f"seed-{seed}/{name}").read_text()) for name in ("train.json", "eval.json"))
        model = record["seeds"][str(seed)].pop("model_sha256"), record["seeds"][str(seed)].pop("model_bytes")
        assert record["seeds"][str(seed)] == {"best_epoch": train["best_epoch"], "val_accuracy": train["val_accuracy"],
                                              "val_loss": train["val_loss"], "test_accuracy": scored["accuracy"]}
        assert len(model[0]) == 64 and model[1] > 0
        assert (out / f"seed-{seed}/epochs/plots/metrics/val_loss.tsv").exists()
        assert (out / f"seed-{seed}/plots/training.png").exists() and (out / f"logs/train-{seed}.log").exists()
        scores[seed] = train, model
    assert scores[1] != scores[2], "each seed trains its own classifier"
    assert model[0] == sha256_file(repo.path / "data/model/weights.npz"), "the last seed's model is the one left"


def test_a_setting_the_params_refuse_stops_the_recipe_before_any_stage(tmp_path):
    repo, out = prepared_repo(tmp_path / "work"), tmp_path / "out"
    before = (repo.path / "params.yaml").read_bytes()
    done = run_recipe(repo, out, "-S", "lm.epochs=0")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [f"error: {repo.path / 'params.yaml'}: 'lm.epochs' is 0; it must be an "
                                        "integer from 1 to 1000"]
    assert (repo.path / "params.yaml").read_bytes() == before and not out.exists()
    done = run_recipe(repo, out, "-S", "lm.epoch=2")
    assert done.stderr.splitlines() == ["error: -S lm.epoch: params.yaml has no such key"]
