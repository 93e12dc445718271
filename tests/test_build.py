"""setup.py's CUDA architectures for a build on a machine without a GPU (no nvcc needed here)."""
import runpy
from pathlib import Path

import pytest

SETUP = runpy.run_path(str(Path(__file__).resolve().parent.parent / "setup.py"))  # defines, does not build
default_cuda_arch_list = SETUP["default_cuda_arch_list"]

CUDA_13_CODES = "sm_75 sm_80 sm_86 sm_87 sm_88 sm_89 sm_90 sm_100 sm_110 sm_103 sm_120 sm_121".split()
CUDA_12_4_CODES = "sm_50 sm_52 sm_53 sm_60 sm_61 sm_62 sm_70 sm_72 sm_75 sm_80 sm_86 sm_87 sm_89 sm_90".split()


@pytest.mark.parametrize("codes, torch_version, expected", [
    (CUDA_13_CODES, "2.14.1+cu130", "8.0;9.0+PTX;10.0;12.0"),
    (CUDA_13_CODES, "2.7.0", "8.0;9.0+PTX;10.0;12.0"),
    (CUDA_12_4_CODES, "2.14.1+cu124", "8.0;9.0+PTX"),  # nvcc cannot emit sm_100 / sm_120 yet
    (CUDA_13_CODES, "2.6.0+cu126", "8.0;9.0+PTX"),  # torch's builder rejects "12.0" before 2.7
    (["sm_80", "sm_90", "sm_100"], "2.10.0", "8.0;9.0+PTX;10.0"),
    ([], "2.14.1", "8.0;9.0+PTX"),  # nvcc could not say
])
def test_default_arch_list(codes, torch_version, expected):
    assert default_cuda_arch_list(codes, torch_version) == expected


def test_the_newest_machine_code_has_ptx_for_later_gpus():
    """Every list carries PTX, which a GPU newer than its machine code compiles at load time."""
    for codes in (CUDA_13_CODES, CUDA_12_4_CODES, []):
        assert "+PTX" in default_cuda_arch_list(codes, "2.14.1")


def test_nvcc_that_cannot_run_lists_nothing(tmp_path):
    assert SETUP["nvcc_gpu_codes"](str(tmp_path / "no-nvcc-here")) == set()


def test_shared_libstdcxx_names_the_loaded_library(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.33\n"
                    "7f02-7f03 r--p 00000000 08:01 43 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
                    "7f04-7f05 rw-p 00000000 00:00 0 \n")
    assert SETUP["shared_libstdcxx"](str(maps)) == ["/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.33"]
    assert SETUP["shared_libstdcxx"](str(tmp_path / "missing")) == []


def test_extension_formats_numbers_in_its_errors():
    """With a second, static libstdc++ in the extension, a number streamed into a TORCH_CHECK message comes out
    empty (or crashes the process, as seen on a GPU machine whose compiler linked it statically)."""
    import torch

    from electra_fast import _extension

    if not _extension.load():
        pytest.skip("the C++ extension is not built")
    with pytest.raises(RuntimeError, match=r"k must be in \[0, T\] = \[0, 8\], got 30"):
        torch.ops.electra_fast_C.select_tokens(torch.randn(1, 8, 1), torch.randn(1, 8),
                                               torch.ones(1, 8, dtype=torch.uint8), 30)
