"""electra_fast: fused Triton and C++/CUDA kernels for ELECTRA-style pre-training."""
__version__ = "0.1.0"

from . import backend  # noqa: E402,F401
