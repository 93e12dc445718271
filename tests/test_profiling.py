"""electra_fast.profiling.measure_peak_memory: peaks on CPU (through the profiler) and CUDA."""
import pytest
import torch

from electra_fast.profiling import measure_peak_memory

MB4 = 4 * 2**20


def _alloc_4mb(device="cpu"):
    t = torch.empty(2**20, dtype=torch.float32, device=device)
    del t
    return "done"


def test_cpu_tensor_allocated_inside_fn_is_seen():
    result, peak = measure_peak_memory(_alloc_4mb)
    assert result == "done"
    assert peak >= MB4


def test_cpu_peak_is_relative_to_entry():
    held = torch.empty(8 * 2**20)  # allocated before: must not count
    _, peak = measure_peak_memory(lambda: held.sum())
    assert peak < 2**20
    del held


def test_cpu_peak_not_sum_of_allocations():
    def two_in_turn():
        for _ in range(2):
            t = torch.empty(2**20)
            del t

    _, peak = measure_peak_memory(two_in_turn)
    assert MB4 <= peak < 2 * MB4


def test_cpu_internal_allocation_of_cpp_op_is_seen():
    # median of all elements copies its input inside the ATen kernel and returns a scalar:
    # only an allocator-level view sees the 4 MB temporary
    x = torch.randn(2**20)
    result, peak = measure_peak_memory(torch.median, x)
    assert result.numel() == 1
    assert peak >= MB4


def test_kwargs_are_passed():
    result, peak = measure_peak_memory(torch.zeros, 2**20, dtype=torch.float64)
    assert result.dtype == torch.float64
    assert peak >= 2 * MB4


@pytest.mark.gpu
def test_cuda_peak():
    x = torch.randn(2**20, device="cuda")
    result, peak = measure_peak_memory(lambda x: (x * 2).sum(), x)
    assert result.is_cuda
    assert peak >= MB4
    _, peak = measure_peak_memory(torch.median, x)
    assert peak >= MB4
