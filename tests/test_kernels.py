"""The kernel pins (imdb_lstm/kernels.py) and the backend table's dispatch, in-process: what they set,
refuse and warn, without importing any framework."""
import os
import platform
from types import SimpleNamespace

import pytest
from conftest import ROOT

from imdb_lstm import backends, kernels
from imdb_lstm.errors import PipelineError

FLAGS = "flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 avx512f\n"


def cpuinfo(tmp_path, text):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n" + text)
    return path


def test_pin_sets_the_backends_variables_over_the_environment_and_removes_competing_ones(monkeypatch):
    for name in kernels.UNSET:
        monkeypatch.setenv(name, "AVX512_CORE")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # a user's setting, overridden
    pins = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}
    kernels.pin(SimpleNamespace(CROSS_CPU_FLAG="avx2", KERNELS=pins))
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2" and os.environ["MKL_CBWR"] == "COMPATIBLE"
    assert not set(kernels.UNSET) & set(os.environ)
    assert set(kernels.UNSET) == {"DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "DNNL_DEFAULT_FPMATH_MODE"}


@pytest.mark.parametrize("flag", ["avx2", None])
def test_only_a_backend_that_promises_other_cpus_the_same_bits_reads_the_cpu(monkeypatch, capsys, flag):
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")  # warns where the CPU is read
    kernels.pin(SimpleNamespace(CROSS_CPU_FLAG=flag, KERNELS={}))
    assert ("aarch64" in capsys.readouterr().err) is (flag is not None)


@pytest.mark.parametrize("flag, machine, promised", [("avx2", "x86_64", True), ("avx512f", "x86_64", False),
                                                     (None, "x86_64", False), ("avx2", "aarch64", False)])
def test_other_cpus_bits_are_promised_on_an_x86_64_cpu_with_the_backends_flag(tmp_path, monkeypatch, flag,
                                                                              machine, promised):
    monkeypatch.setattr(platform, "machine", lambda: machine)
    entry = SimpleNamespace(CROSS_CPU_FLAG=flag)
    assert kernels.same_bits_as_other_cpus(entry, cpuinfo(tmp_path, FLAGS.replace("avx512f", "avx512vl"))) is promised
    assert not kernels.same_bits_as_other_cpus(entry, tmp_path / "unreadable")


def test_a_cpu_with_avx2_and_fma_passes_quietly(tmp_path, capsys):
    kernels._require_avx2(cpuinfo(tmp_path, FLAGS))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("missing", ["avx2", "fma"])
def test_a_cpu_without_avx2_or_fma_is_refused_with_the_way_out(tmp_path, missing):
    flags = FLAGS.replace(f" {missing} ", " ")
    with pytest.raises(PipelineError) as refused:
        kernels._require_avx2(cpuinfo(tmp_path, flags))
    assert str(refused.value) == ("this CPU has no AVX2/FMA, so its results cannot match other machines': set "
                                  "`reproducible: false` in params.yaml to train with what it has")


@pytest.mark.parametrize("text", [None, "model name\t: no flags line\n"])
def test_unreadable_cpu_features_warn_that_results_hold_on_this_machine_only(tmp_path, capsys, text):
    path = tmp_path / "absent" if text is None else cpuinfo(tmp_path, text)
    kernels._require_avx2(path)
    assert capsys.readouterr().err == (f"warning: cannot read the CPU's features from {path}: results are "
                                       "reproducible on this machine, not across machines\n")


@pytest.mark.parametrize("machine", ["x86_64", "AMD64"])  # Linux's name for x86-64, and Windows'
def test_an_x86_64_cpu_is_read_by_either_name(tmp_path, monkeypatch, capsys, machine):
    monkeypatch.setattr(platform, "machine", lambda: machine)
    with pytest.raises(PipelineError, match="this CPU has no AVX2/FMA"):
        kernels._require_avx2(cpuinfo(tmp_path, FLAGS.replace(" avx2 ", " ")))


def test_another_architecture_warns_and_reads_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(platform, "machine", lambda: "AArch64")
    kernels._require_avx2(tmp_path / "never read")
    assert capsys.readouterr().err == ("warning: this is a aarch64 CPU; the pins hold for x86-64 only: results "
                                       "are reproducible on this machine, not across machines\n")


def test_by_default_the_machines_own_cpu_is_read(capsys):
    kernels._require_avx2()  # CI's CPU: x86-64 with AVX2 and FMA, so quiet
    assert capsys.readouterr().err == ""


# --- the backend table ---------------------------------------------------------------------------

def test_the_table_lists_the_four_tutorial_backends_each_with_its_install_file():
    assert backends.NAMES == ("torch", "paddle", "tensorflow", "mindspore")
    files = {name: backends.get(name).REQUIREMENTS for name in backends.installed()}
    assert files == {name: {"tensorflow": "requirements-tensorflow.txt", "mindspore": "requirements-mindspore.txt"}
                     .get(name, "requirements.txt") for name in backends.installed()}
    assert {"torch", "paddle"} <= set(backends.installed())  # requirements.txt's two always are
    assert all((ROOT / name).exists() for name in set(files.values()))


def test_an_unknown_backend_is_refused_before_any_import():
    for name in ("mxnet", "", "Torch", "backends"):
        with pytest.raises(PipelineError) as refused:
            backends.get(name)
        assert str(refused.value) == f"unknown backend {name!r}: use one of torch, paddle, tensorflow, mindspore"


def test_a_backend_whose_framework_is_missing_is_not_installed(monkeypatch):
    entry = backends.get("paddle")
    monkeypatch.setattr(entry, "PACKAGE", "paddle_not_installed_here")
    assert "paddle" not in backends.installed()
    with pytest.raises(PipelineError, match="^backend paddle is not installed: pip install -r requirements.txt$"):
        backends.get("paddle")


def test_framework_optimizer_finds_the_object_of_a_kind_among_the_attributes():
    class Holder:
        pass

    holder = Holder()
    assert backends.framework_optimizer(holder, dict) is None  # not created yet
    holder.lr, holder.real = 0.1, {"state": 1}
    assert backends.framework_optimizer(holder, dict) is holder.real
