"""Build electra_fast._C: the C++ CPU kernels always, the CUDA kernels when torch and nvcc allow.

Environment:
  ELECTRA_FAST_SKIP_BUILD=1   pure-Python install (every op falls back to the reference backend)
  ELECTRA_FAST_FORCE_CUDA=1   fail instead of building CPU-only when CUDA cannot be built (CI check)
  ELECTRA_FAST_EXTRA_INCLUDE  extra include dirs (os.pathsep-separated), e.g. site-packages/nvidia/cu13/include
  TORCH_CUDA_ARCH_LIST        CUDA architectures; when unset and no GPU is visible, default_cuda_arch_list()
  MAX_JOBS                    parallel compile jobs (read by torch's ninja builder)
"""
import glob
import os
import platform
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


# Machine code beyond sm_80/sm_90, for B200 (10.0) and RTX 50-series (12.0): built when nvcc can emit it
# and torch's extension builder knows the arch (its allow-list has both from torch 2.7).
NEWER_ARCHES = ("10.0", "12.0")
NEWER_ARCHES_TORCH = (2, 7)


def default_cuda_arch_list(gpu_codes, torch_version):
    """TORCH_CUDA_ARCH_LIST for a machine without a visible GPU, given the machine-code targets nvcc
    lists (`nvcc --list-gpu-code`: "sm_80", "sm_90", ...) and torch.__version__: A100 and H100 machine
    code, the PTX of 9.0, which the driver compiles for any newer GPU (without PTX a GPU newer than the
    newest machine code fails every launch with "no kernel image is available"), and the NEWER_ARCHES
    that nvcc and torch both support."""
    major_minor = tuple(int(part) for part in torch_version.split("+")[0].split(".")[:2])
    codes = set(gpu_codes) if major_minor >= NEWER_ARCHES_TORCH else set()
    newer = [arch for arch in NEWER_ARCHES if "sm_" + arch.replace(".", "") in codes]
    return ";".join(["8.0", "9.0+PTX"] + newer)


def nvcc_gpu_codes(nvcc):
    """The machine-code targets `nvcc --list-gpu-code` names (empty when nvcc cannot run or say)."""
    try:
        out = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return set(out.split())


def shared_libstdcxx(maps_path="/proc/self/maps"):
    """The libstdc++ this process has loaded (torch's), as a link input, or [] where there is none to read.

    Some toolchains link their own static libstdc++ into a shared library by default. The extension then has a
    second copy, bound to itself (-Bsymbolic-functions), whose stream code reads locale facets of the stream
    torch's copy built: formatting a number into an error message (TORCH_CHECK) crashes the process. Naming
    torch's libstdc++ before the compiler's implicit -lstdc++ resolves every C++ runtime symbol there."""
    try:
        with open(maps_path) as maps:
            paths = {line.split()[-1] for line in maps if "/libstdc++.so" in line}
    except OSError:
        return []
    return sorted(path for path in paths if os.path.isabs(path))[:1]


def _cuda_wanted(torch_version_cuda):
    if torch_version_cuda is None:
        return False
    from torch.utils.cpp_extension import CUDA_HOME

    return CUDA_HOME is not None and (
        shutil.which("nvcc") is not None or os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    )


def _extensions():
    if os.environ.get("ELECTRA_FAST_SKIP_BUILD", "0") == "1":
        return [], {}
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    include_dirs = [os.path.join(ROOT, "csrc", "include")]
    include_dirs += [p for p in os.environ.get("ELECTRA_FAST_EXTRA_INCLUDE", "").split(os.pathsep) if p]
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp") + glob.glob("csrc/autograd/*.cpp"))
    cxx_flags = ["-O3", "-fopenmp", "-fno-math-errno"]
    # glibc's vector libm (the SIMD variants of expf, see csrc/include/electra_fast/cpu_isa.h)
    link_args = ["-fopenmp"] + (["-lmvec"] if sys.platform.startswith("linux") and platform.machine() == "x86_64" else [])
    link_args += shared_libstdcxx()
    define_macros = [("Py_LIMITED_API", "0x03090000")]
    use_cuda = _cuda_wanted(torch.version.cuda)
    if os.environ.get("ELECTRA_FAST_FORCE_CUDA", "0") == "1" and not use_cuda:
        raise RuntimeError(
            f"ELECTRA_FAST_FORCE_CUDA=1 but CUDA cannot be built: torch.version.cuda={torch.version.cuda}, "
            "nvcc/CUDA_HOME not found or torch is a CPU build"
        )
    if use_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            # torch raises on a GPU-less machine unless told which architectures to build
            from torch.utils.cpp_extension import CUDA_HOME

            nvcc = os.path.join(CUDA_HOME, "bin", "nvcc")
            os.environ["TORCH_CUDA_ARCH_LIST"] = default_cuda_arch_list(nvcc_gpu_codes(nvcc), torch.__version__)
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        ext = CUDAExtension(
            "electra_fast._C",
            sources,
            include_dirs=include_dirs,
            define_macros=define_macros + [("EF_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]},
            extra_link_args=link_args,
            py_limited_api=True,
        )
    else:
        ext = CppExtension(
            "electra_fast._C",
            sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_args,
            py_limited_api=True,
        )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)}


# pip and `python setup.py` run this file as __main__; tests and the Makefile load it for the functions above
if __name__ == "__main__":
    ext_modules, cmdclass = _extensions()
    setup(
        # the benchmark suite is written in benchmarks/ and installed as electra_fast._benchmarks, so
        # `electra-fast bench` runs after a plain pip install
        packages=find_packages(include=["electra_fast", "electra_fast.*"]) + ["electra_fast._benchmarks"],
        package_dir={"electra_fast._benchmarks": "benchmarks"},
        ext_modules=ext_modules,
        cmdclass=cmdclass,
        options={"bdist_wheel": {"py_limited_api": "cp39"}} if ext_modules else {},
    )
