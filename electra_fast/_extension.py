"""Loads the compiled extension electra_fast._C once, and says whether it is there.

Importing `electra_fast._C` runs its TORCH_LIBRARY registrations, after which the raw kernels live
under `torch.ops.electra_fast_C`. A pure-Python install (ELECTRA_FAST_SKIP_BUILD=1) has no `_C`: the
ops then run on the reference backend and one warning says so.
"""
import functools
import warnings

import torch


@functools.lru_cache(maxsize=None)
def load() -> bool:
    """True when the C++ extension is importable; warns once when it is not."""
    try:
        from . import _C  # noqa: F401
    except ImportError as exc:
        warnings.warn(
            "electra_fast._C is not built (pure-Python install or a failed build: "
            f"{exc}); the 'cpp' and 'cuda' backends are unavailable and ops fall back to 'reference'. "
            "Reinstall with `pip install --no-build-isolation .` to build the kernels.",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


def build_info() -> dict:
    """Facts the extension was built with, e.g. {'compiler': 'gcc 12.2', 'cuda': '1', 'openmp': '1'}."""
    if not load():
        return {}
    raw = torch.ops.electra_fast_C.build_info()
    return dict(item.split("=", 1) for item in raw.split(";"))


def has_cuda_kernels() -> bool:
    return build_info().get("cuda") == "1"
