"""Each tlx fix in imdb_lstm/backends/NAME/fixes.py: the code that needs it fails without it (compat_fixes.py)."""
import pytest
from compat_fixes import FIXES, ms_adam_step
from conftest import require


def call(function):
    """A program that calls compat_fixes' `function` with the loaded tlx (conftest.run_backend's)."""
    return f"import compat_fixes\ncompat_fixes.{function.__name__}(tlx)\n"


@pytest.mark.parametrize("fix", FIXES)
def test_the_code_fails_without_the_fix(fix, backend_run):
    """That it works with every fix in place, tests/test_backend.py shows: it calls each in the test
    process, on each backend (test_backends.py runs it on the others)."""
    backend, needs_the_fix, failure, *dependents = FIXES[fix]
    require(backend)
    broken = backend_run(backend, call(needs_the_fix), without=[fix.split("[")[0], *dependents])
    assert broken.returncode != 0
    assert failure in broken.stderr


def test_a_mindspore_failure_leaves_nothing_in_the_working_directory(backend_run, tmp_path):
    """MindSpore writes a failed graph's analysis to rank_0/om/ under the working directory, which in a
    checkout is an untracked folder among the project's files; backends/mindspore/ sends it elsewhere."""
    require("mindspore")
    failed = backend_run("mindspore", call(ms_adam_step), without=["gather_embeddings_densely"], cwd=tmp_path)
    assert failed.returncode != 0 and "must be equal to" in failed.stderr
    assert list(tmp_path.iterdir()) == []
