"""Peak memory of a call, on CPU and on CUDA, for the benchmarks and the memory tests.

    result, peak_bytes = measure_peak_memory(fn, *args, **kwargs)

peak_bytes is the highest number of bytes allocated above the level at entry while fn ran
(allocations freed before fn returns still count; the returned result's memory counts too).

CUDA (when any tensor argument is on a CUDA device): torch.cuda.max_memory_allocated after a reset
of the peak counter, minus memory_allocated at entry.
CPU: torch has no CPU peak counter, so the call runs under torch.profiler with profile_memory=True,
which records every allocation and free of the CPU allocator (c10's reportMemoryUsage) - including
those made inside C++ kernels and at::parallel_for worker threads - and the peak is the maximum of
their running sum, in time order. The profiler adds overhead: measure memory and time in separate runs.
"""
from __future__ import annotations

from typing import Any, Callable, Tuple

import torch
from torch.utils import _pytree as pytree


def _cuda_device(args, kwargs):
    """The CUDA device of the first CUDA tensor among the arguments, or None."""
    for leaf in pytree.tree_leaves((args, kwargs)):
        if isinstance(leaf, torch.Tensor) and leaf.is_cuda:
            return leaf.device
    return None


def _cuda_peak(device: torch.device, fn: Callable, args, kwargs) -> Tuple[Any, int]:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    result = fn(*args, **kwargs)
    torch.cuda.synchronize(device)
    return result, max(torch.cuda.max_memory_allocated(device) - base, 0)


def _cpu_peak(fn: Callable, args, kwargs) -> Tuple[Any, int]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn(*args, **kwargs)
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch._C._autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    level = peak = 0
    for e in events:
        level += e.nbytes()
        peak = max(peak, level)
    return result, peak


def measure_peak_memory(fn: Callable, *args, **kwargs) -> Tuple[Any, int]:
    """(fn(*args, **kwargs), peak bytes allocated above the entry level while it ran).

    The device is CUDA when any tensor argument is on CUDA, else CPU (see the module docstring)."""
    device = _cuda_device(args, kwargs)
    if device is not None:
        return _cuda_peak(device, fn, args, kwargs)
    return _cpu_peak(fn, args, kwargs)
