"""Pin how each backend picks its CPU kernels, so the same params and seed give the same bits on any
x86-64 CPU with AVX2 (Intel or AMD, with or without AVX-512 or AMX) and any number of cores.

The math libraries under torch and paddle (oneDNN, MKL, ATen) choose kernels by the CPU they find,
and by their thread count; each choice sums in another order, so a training run drifts in the last
bits from the first step on. `pin(backend)` runs before the backend is imported (the libraries read
these variables once, when they load or first run) and overrides whatever the environment says;
`pin_threads` runs right after the import. params.yaml's `reproducible: false` skips both: then the
backend's fastest kernels for this CPU run, and results differ by machine.
Measurements: BENCHMARKS.md ("Reproducible kernels") and ../shared/notes/cpu-kernels.md.
"""
import os
import platform
import sys
from pathlib import Path

from imdb_lstm.errors import PipelineError

# Variables that pick kernels, per backend. Each one was seen to change a training run's weights
# when set otherwise (BENCHMARKS.md), except where the comment says it is a guard.
ENVIRONMENT = {
    "torch": {
        # oneDNN runs torch's CPU LSTM and picks AVX2, AVX-512 or AMX kernels by CPU.
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        # Guard: never let oneDNN compute f32 in bf16 or tf32, whatever a stray variable asks.
        "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT",
        # ATen's own vectorised kernels ("default", i.e. unvectorised, sums in another order).
        "ATEN_CPU_CAPABILITY": "avx2",
        # torch's MKL (the Linear layers' matmul) takes vendor-specific paths; COMPATIBLE is the one
        # MKL documents as giving the same results on Intel and non-Intel CPUs.
        "MKL_CBWR": "COMPATIBLE",
    },
    "paddle": {
        # paddle's bundled MKL (2019) gives a non-Intel CPU its generic path and an Intel one its
        # widest: type 5 makes it treat any AVX2 CPU as an Intel AVX2 one, and CBWR=AVX2 keeps Intel
        # CPUs with AVX-512 on that same path. Same kernels everywhere, and twice as fast on AMD.
        "MKL_DEBUG_CPU_TYPE": "5",
        "MKL_CBWR": "AVX2",
        # One thread for paddle's MKL (its default) and its OpenMP kernels: with OMP_NUM_THREADS
        # 2 to 8 a run gave other bits than with 1. One thread was also the faster on 2 cores.
        "FLAGS_paddle_num_threads": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # Guards: paddle's oneDNN kernels stay off (its CPU default), and capped if anything enables them.
        "FLAGS_use_mkldnn": "0",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
}
# Older or competing names that would override the pins above if a user's environment set them.
UNSET = ("DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "DNNL_DEFAULT_FPMATH_MODE")

# torch's oneDNN LSTM splits its work by thread count: 1 thread gives other bits than 2, and 2 to 64
# all agree (measured). Two threads everywhere: the same bits on a 1-core laptop and a 64-core server.
TORCH_THREADS = 2


def pin(backend):
    """Set the kernel-picking variables for `backend`; call before it is imported."""
    _require_avx2()
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ.update(ENVIRONMENT[backend])


def pin_threads(backend):
    """Fix the thread count that changes results; call right after the backend is imported."""
    if backend == "torch":
        import torch

        torch.set_num_threads(TORCH_THREADS)


def _require_avx2(cpuinfo=Path("/proc/cpuinfo")):
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        _warn(f"this is a {machine} CPU; the pins hold for x86-64 only")
        return
    try:
        flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        _warn(f"cannot read the CPU's features from {cpuinfo}")
        return
    if "avx2" not in flags or "fma" not in flags:
        raise PipelineError("this CPU has no AVX2/FMA, so its results cannot match other machines': "
                            "set `reproducible: false` in params.yaml to train with what it has")


def _warn(reason):
    print(f"warning: {reason}: results are reproducible on this machine, not across machines",
          file=sys.stderr)
