"""Triton kernels, one module per op. Imported lazily, only when the 'triton' backend runs, so that
installs without Triton work and TRITON_INTERPRET can be set before any @triton.jit decoration.

Each module lists its kernels in AOT_KERNELS as (kernel, signature, constexprs) for the ahead-of-time
GPU compile check (tools/triton_aot_check.py), which CI runs for sm_80 and sm_90 without a GPU.
"""
