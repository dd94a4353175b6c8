"""The benchmark script runs: its quick mode measures every epoch measure on tiny inputs."""
import subprocess
import sys

from conftest import ROOT


def test_quick_benchmark_prints_every_epoch_measure():
    done = subprocess.run([sys.executable, "benchmarks/run.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| one ")]
    for backend in ("torch", "paddle"):
        assert any(f"tlx+{backend} ÷ plain {backend} |" in row for row in rows), done.stdout
        assert any(f"tlx+{backend} epoch" in row and "pinned" in row for row in rows), done.stdout
    for row in rows:
        ratio = float(row.split("|")[2].split()[0])
        assert 0.2 < ratio < 5, row  # both sides ran the same work
