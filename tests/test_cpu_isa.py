"""The CPU hot loops run the best build this CPU supports (csrc/include/electra_fast/cpu_isa.h): the build
each kernel picked, as electra_fast_C::cpu_isa reports it, against the CPU flags in /proc/cpuinfo."""
import platform

import pytest
import torch

from electra_fast import _extension

KERNELS = ("bias_gelu", "bias_gelu_backward", "dropout", "dropout_add_layer_norm", "dropout_add_layer_norm_backward",
           "dropout_add_layer_norm_dropout_add", "generator_head_rows",
           "rtd_count_real", "rtd_loss_fwd", "sample_replace")

pytestmark = pytest.mark.skipif(not _extension.load(), reason="the C++ extension is not built")


def _cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def _best_isa(flags):
    if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "baseline"


def _has_variants():
    """Per-ISA builds exist for x86-64 Linux with GCC; elsewhere every kernel has its baseline build only."""
    compiler = _extension.build_info().get("compiler", "")
    return platform.system() == "Linux" and platform.machine() == "x86_64" and compiler.startswith("gcc")


def test_each_kernel_runs_the_best_build_for_this_cpu():
    expected = _best_isa(_cpu_flags()) if _has_variants() else "baseline"
    chosen = torch.ops.electra_fast_C.cpu_isa()
    assert chosen == {kernel: expected for kernel in KERNELS}, f"this CPU supports {expected}"

