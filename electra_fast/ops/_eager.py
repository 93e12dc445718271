"""When an op may skip the torch.library dispatcher.

Calling a `torch.library.custom_op` from Python costs tens of microseconds (schema binding, the Python
autograd wrapper, redispatch): more than a small fused kernel itself. In plain eager mode an op may
instead call the very same backend implementation through a `torch.autograd.Function` — identical
kernels, identical results (tests check it bit for bit). Everything else — torch.compile tracing,
fake/meta tensors, tensor subclasses, dispatch modes (FlopCounterMode, opcheck's checks), functorch
transforms — goes through the registered custom op, which is what makes those work.
"""
import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode


def plain_eager(*tensors) -> bool:
    """True when every tensor is a plain torch.Tensor on a real device and no tracing, dispatch mode
    or functorch transform is active."""
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    if torch._C._are_functorch_transforms_active():
        return False
    return all(t is None or (type(t) is torch.Tensor and t.device.type != "meta") for t in tensors)
