import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from imdb_lstm import backend, backends
from imdb_lstm.errors import PipelineError

ROOT = Path(__file__).resolve().parents[1]


def run_backend(backend, code, without=(), timeout=300, cwd=ROOT):
    """Run `code` in a fresh python with `tlx` loaded on `backend` (tlx picks its backend once per
    process). `without` names fixes (backends/<name>/fixes.py) to leave out, to show the code fails without them."""
    skip = "".join(f"assert fixes.{fix}\nfixes.{fix} = lambda *args: None\n" for fix in without)  # a fix that is there
    program = (
        f"from imdb_lstm import backend\nfrom imdb_lstm.backends.{backend} import fixes\n"
        f"{skip}tlx = backend.load({backend!r})\n"
        "import numpy as np\n" + textwrap.dedent(code)
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


# The test files that call tlx in the test process, on IN_PROCESS (below); test_backends.py runs them on
# each other installed backend.
IN_PROCESS_FILES = ["test_backend.py", "test_model.py", "test_training.py", "test_loop.py", "test_adversarial.py",
                    "test_language_model.py", "test_predict.py"]
# The test files that run the package in the test process and finish in seconds: `pytest -m fast`, the
# edit-test loop's subset. The rest run stages, dvc and backends in subprocesses.
FAST_FILES = {"test_text.py", "test_files.py", "test_progress.py", "test_metrics.py", "test_params.py",
              "test_archive.py", "test_errors.py", "test_kernels.py", "test_fetch.py", *IN_PROCESS_FILES}


def pytest_configure(config):
    config.addinivalue_line("markers", "fast: runs in the test process, in seconds (pytest -m fast)")


# The other test files, slowest first (TESTING.md has what each takes).
SLOWEST_FIRST = ["test_benchmarks.py", "test_gpu_recipe.py", "test_pipeline.py", "test_stages.py",
                 "test_experiments.py", "test_distributed.py", "test_reproducible.py", "test_checkpoint.py",
                 "test_lm.py", "test_compat.py", "test_fuzz.py", "test_backends.py", "test_dvc_yaml.py",
                 "test_model_files.py", "test_baseline.py"]


def pytest_collection_modifyitems(items):
    """Mark the fast files, and order the files slowest first: run in parallel by file (README's command),
    each worker takes the next file when it is free, so the long ones start first and the fast ones fill
    in at the end, and the workers finish at about the same time."""
    for item in items:
        name = item.path.name
        if name not in FAST_FILES and name not in SLOWEST_FIRST:
            raise pytest.UsageError(f"tests/{name} is in neither FAST_FILES nor SLOWEST_FIRST (tests/conftest.py): "
                                    "add it to one")
        if name in FAST_FILES:
            item.add_marker(pytest.mark.fast)
    items.sort(key=lambda item: SLOWEST_FIRST.index(item.path.name) if item.path.name in SLOWEST_FIRST
               else len(SLOWEST_FIRST))


@pytest.fixture
def backend_run():
    return run_backend


# Every backend; torch and paddle come with requirements.txt, the others with their own file
# (README). A test of a backend that is not installed is skipped, saying what to install.
BACKENDS = backends.NAMES


def require(backend):
    try:
        backends.get(backend)
    except PipelineError as error:  # not installed: the message names the file to install
        pytest.skip(str(error))


# tlx picks its backend once per process: the tests that call it in the test process run on the backend
# IMDB_TEST_BACKEND names (torch if unset); test_backends.py runs them once more on each other backend.
IN_PROCESS = os.environ.get("IMDB_TEST_BACKEND", "torch")
LOADED = {"environment": {}, "warnings": []}  # what backend.load left in os.environ, and what it warned


@pytest.fixture(scope="session")
def tlx():
    """tlx on IN_PROCESS, loaded in this process once. The environment is put back as it was, so the
    kernel pins stay out of the subprocesses of later tests; LOADED keeps what the load set and warned."""
    require(IN_PROCESS)
    environment = dict(os.environ)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = backend.load(IN_PROCESS)
    LOADED["warnings"].extend(str(warning.message) for warning in caught)
    LOADED["environment"].update(os.environ)
    os.environ.clear()
    os.environ.update(environment)
    return loaded


@pytest.fixture(scope="session")
def loaded(tlx):
    """LOADED, as the `tlx` fixture filled it. A test reads it through this fixture, not by importing it: a
    second pytest session in one process (mutmut's workers) imports conftest afresh, and a test module kept
    from the first would hold the first session's empty dict."""
    return LOADED


@pytest.fixture(scope="session")
def model(tlx):
    """imdb_lstm.model, which builds on the loaded tlx."""
    import imdb_lstm.model
    return imdb_lstm.model
