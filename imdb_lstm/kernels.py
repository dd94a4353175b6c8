"""Pin how each backend picks its CPU kernels, so the same params and seed give the same bits.

The math libraries under the backends (oneDNN, MKL, ATen, Eigen) choose kernels by the CPU they find,
and by their thread count; each choice sums in another order, so a training run drifts in the last
bits from the first step on. `pin(entry)` runs before the backend is imported (the libraries read
these variables once, when they load or first run) and overrides whatever the environment says;
the backend's `pin_after_import` runs right after the import. What the pins promise is the backend's
own: the same bits on reruns and resumes on one machine always, and on every x86-64 CPU model with
its CROSS_CPU_FLAG where it names one (same_bits_as_other_cpus). params.yaml's `reproducible: false`
skips the pins: then the backend's fastest kernels for this CPU and all its cores run, and results
differ by machine.
"""
import os
import platform
import sys
from pathlib import Path

from imdb_lstm.errors import PipelineError

# Older or competing names that would override a backend's pins (its KERNELS) if a user's environment set them.
UNSET = ("DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "DNNL_DEFAULT_FPMATH_MODE")
CPUINFO = Path("/proc/cpuinfo")
X86_64 = ("x86_64", "amd64")  # platform.machine(), lower-cased, on Linux and on Windows


def pin(entry):
    """Set backend `entry`'s kernel-picking variables (its KERNELS: each one was seen to change a training
    run's weights when set otherwise, unless its comment says it is a guard); call before the backend is
    imported. The thread count that changes results is fixed by its pin_after_import()."""
    if entry.CROSS_CPU_FLAG:
        _require_avx2()
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ.update(entry.KERNELS)


def same_bits_as_other_cpus(entry, cpuinfo=CPUINFO):
    """Whether backend `entry`, pinned, gives this CPU the bits it gives other CPU models: this is an
    x86-64 CPU with the backend's CROSS_CPU_FLAG (None: it promises no other CPU its bits)."""
    if entry.CROSS_CPU_FLAG is None or platform.machine().lower() not in X86_64:
        return False
    try:
        return entry.CROSS_CPU_FLAG in _flags(cpuinfo)
    except (OSError, StopIteration):
        return False


def _flags(cpuinfo):
    return next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split()


def _require_avx2(cpuinfo=CPUINFO):
    machine = platform.machine().lower()
    if machine not in X86_64:
        _warn(f"this is a {machine} CPU; the pins hold for x86-64 only")
        return
    try:
        flags = _flags(cpuinfo)
    except (OSError, StopIteration):
        _warn(f"cannot read the CPU's features from {cpuinfo}")
        return
    if "avx2" not in flags or "fma" not in flags:
        raise PipelineError("this CPU has no AVX2/FMA, so its results cannot match other machines': "
                            "set `reproducible: false` in params.yaml to train with what it has")


def _warn(reason):
    print(f"warning: {reason}: results are reproducible on this machine, not across machines",
          file=sys.stderr)
