"""dvc.yaml lists, for every stage, exactly the project code it imports and the params it reads.

Each stage runs for real on the tests' small archive, with load_params wrapped to record every key the
stage reads, and sys.modules read at the end for the project modules it imported."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT
from project import TINY, make_project, make_repo, set_params

RECORD = """
import json, runpy, sys
import imdb_lstm.params as P

reads, sections, loaded = set(), set(), []

class Recorder(dict):
    def __init__(self, values, prefix):
        super().__init__(values)
        self.prefix = prefix

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if isinstance(value, dict):
            sections.add(self.prefix + key)
            return Recorder(value, self.prefix + key + ".")
        reads.add(self.prefix + key)
        return value

original = P.load_params
def load_params(*args, **kwargs):
    loaded.append(True)
    return Recorder(original(*args, **kwargs), "")
P.load_params = load_params
before = set(sys.modules)
try:
    runpy.run_module(sys.argv[1], run_name="__main__")
finally:
    modules = {m for m in set(sys.modules) - before if m.split(".")[0] in ("imdb_lstm", "stages") and "." in m}
    modules |= {sys.argv[1], "imdb_lstm.errors"} | ({"imdb_lstm.params", "imdb_lstm.backends"} if loaded else set())
    # a section read whole (e.g. passed on with **) counts as read; one read key by key does not
    whole = {s for s in sections if not any(r.startswith(s + ".") for r in reads)}
    print(json.dumps({"modules": sorted(modules), "params": sorted(reads | whole)}))
"""

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


# every option that makes a stage read more params: the language model (which starts from the pretrained
# vectors) frozen then tuned, with validation; and, for train alone (the one stage that reads them
# differently), pretrained vectors frozen then tuned
EVERY_STAGE = {**TINY, "epochs": 2, "validation": 0.5, "pretrain": {"use": True},
               "lm": {"use": True, "output_words": 20, "steps": 8, "frozen_epochs": 1}}
TRAIN_ALSO = {"lm": {"use": False}, "pretrain": {"frozen_epochs": 1}}


def record(project, cache, stage):
    """{"modules": [...], "params": [...]}: what `stage` imports and reads, run in its own process in `project`."""
    module = STAGES[stage]["cmd"].split()[-1]
    done = subprocess.run([sys.executable, "-c", RECORD, module], cwd=project, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "IMDB_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """{stage: {"modules": [...], "params": [...]}} from running every stage, in dvc.yaml's order, with
    EVERY_STAGE, then train once more with TRAIN_ALSO: what any of those runs imports or reads."""
    result = {stage: {"modules": set(), "params": set()} for stage in STAGES}

    def add(stage, project):
        for key, values in record(project, cache, stage).items():
            result[stage][key] |= set(values)

    folder = tmp_path_factory.mktemp("dvc_yaml")
    project, cache = make_project(folder, EVERY_STAGE)
    for stage in STAGES:
        add(stage, project)
    shutil.copytree(project, folder / "train_also")  # with the inputs train reads under TRAIN_ALSO too
    set_params(folder / "train_also/params.yaml", TRAIN_ALSO)
    add("train", folder / "train_also")
    return {stage: {key: sorted(values) for key, values in found.items()} for stage, found in result.items()}


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_lists_the_code_it_imports(recorded, stage):
    """Each file a stage imports is a dep, itself or in a listed folder (imdb_lstm/backends: a run imports
    one backend's code, params.yaml picks which); each listed file and folder is imported from."""
    deps = STAGES[stage]["deps"]
    files = {dep for dep in deps if dep.endswith(".py")}
    folders = [{str(path.relative_to(ROOT)) for path in (ROOT / dep).rglob("*.py")}
               for dep in deps if dep.startswith("imdb_lstm") and (ROOT / dep).is_dir()]
    imported = {module.replace(".", "/") + ("/__init__.py" if (ROOT / module.replace(".", "/")).is_dir() else ".py")
                for module in recorded[stage]["modules"]}
    assert sorted(imported - files - set().union(*folders)) == [], "imported, not a dep"
    assert sorted(files - imported) == [], "a dep, not imported"
    assert all(imported & folder for folder in folders), "a folder of which nothing is imported"


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_lists_the_params_it_reads(recorded, stage):
    listed = sorted(STAGES[stage].get("params", []))
    read = recorded[stage]["params"]
    def covered(key):
        return any(key == p or key.startswith(p + ".") for p in listed)
    assert [key for key in read if not covered(key)] == [], "read but not listed in dvc.yaml"
    assert [p for p in listed if not any(key == p or key.startswith(p + ".") for key in read)] == [], \
        "listed in dvc.yaml but never read"


def test_the_records_stay_out_of_the_metrics_list_and_one_command_lists_them(tmp_path):
    """`dvc exp show` has the live run's columns, not every record's; README's `dvc metrics show
    records/*/eval.json` shows each record's figures."""
    repo = make_repo(tmp_path)
    shutil.copytree(ROOT / "records", repo.path / "records")
    repo.commit("records")
    files = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "records").glob("*/eval.json"))
    assert len(files) >= 9
    shown = json.loads(repo.run("dvc", "metrics", "show", "--json", *files).stdout)[""]["data"]
    assert {name: figures["data"]["accuracy"] for name, figures in shown.items()} == {
        name: json.loads((ROOT / name).read_text())["accuracy"] for name in files}
    assert [name for name, figures in shown.items() if any(type(v) not in (int, float)
                                                          for v in figures["data"].values())] == [], "numbers only"
    columns = repo.run("dvc", "exp", "show", "--csv").stdout.splitlines()[0].split(",")
    assert "backend" in columns and not [column for column in columns if "records/" in column]
