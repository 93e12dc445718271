"""tools/triton_aot_check.py's variants: besides the declared signature, each kernel is compiled as the JIT
compiles it when every integer argument is 1 (a compile-time constant unless do_not_specialize names it), and a
scalar fp64 parameter is refused (the JIT passes a Python float as fp32). The compiles themselves run in CI
(`make triton-aot`): they need the compiled JIT, not the interpreter these tests run under."""
import importlib.util
import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("triton_aot_check", ROOT / "tools" / "triton_aot_check.py")
aot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(aot)


def _kernel(*unspecialised):
    names = ["x_ptr", "n", "seed", "offset", "scale", "BLOCK"]
    return SimpleNamespace(params=[SimpleNamespace(name=n, do_not_specialize=n in unspecialised) for n in names])


SIGNATURE = {"x_ptr": "*fp32", "n": "i64", "seed": "i64", "offset": "i32", "scale": "fp32", "BLOCK": "constexpr"}


def test_declared_then_every_integer_one_as_the_jit_types_it():
    (label, sig, const), (ones_label, ones, ones_const) = aot.variants(_kernel("seed", "offset"), SIGNATURE,
                                                                        {"BLOCK": 128})
    assert (label, sig, const) == ("declared", SIGNATURE, {"BLOCK": 128})
    assert ones_label == "ones"
    assert ones == {"x_ptr": "*fp32", "n": "constexpr", "seed": "i32", "offset": "i32", "scale": "fp32",
                    "BLOCK": "constexpr"}
    assert ones_const == {"BLOCK": 128, "n": 1}


def test_without_do_not_specialize_a_one_is_a_constant():
    _, (_, ones, const) = aot.variants(_kernel(), SIGNATURE, {"BLOCK": 128})
    assert ones["seed"] == ones["offset"] == "constexpr" and const["seed"] == const["offset"] == 1


def test_scalar_fp64_is_refused():
    with pytest.raises(TypeError, match=r"scalar fp64 parameter\(s\) \['p'\].*float64_bits"):
        list(aot.variants(_kernel(), {"p": "fp64", "BLOCK": "constexpr"}, {"BLOCK": 1}))
    pointers = {"x_ptr": "*fp64", "BLOCK": "constexpr"}
    assert [label for label, _, _ in aot.variants(_kernel(), pointers, {"BLOCK": 1})] == ["declared", "ones"]


def test_every_kernel_drawing_random_words_leaves_its_stream_unspecialised():
    """Kernels that call philox_words take (seed, offset): a 1 as a compile-time constant has no .to()."""
    from electra_fast.triton import random

    for module, kernel, _, _ in aot.kernels():
        fn = getattr(kernel, "fn", kernel)
        if "philox_words(" in inspect.getsource(fn):
            params = inspect.signature(fn).parameters
            assert {"seed", "offset"} <= set(params), (module, fn.__name__)
            assert _unspecialised(kernel) >= set(random.RANDOM_STREAM), (module, fn.__name__)


def _unspecialised(kernel):
    """do_not_specialize of a JIT kernel, or of an interpreted one (which keeps the decorator's arguments)."""
    if hasattr(kernel, "params"):
        return {p.name for p in kernel.params if p.do_not_specialize}
    return set(kernel.kwargs.get("do_not_specialize", ()))
