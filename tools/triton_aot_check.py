"""Compile every Triton kernel of electra_fast ahead of time for real GPU targets, without a GPU.

`triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))` runs the whole pipeline to PTX and
cubin (ptxas included), so a kernel that the CPU interpreter accepts but the GPU compiler rejects fails
here. Each module of electra_fast.triton lists its kernels in AOT_KERNELS, with the signature of a typical
launch; each is compiled twice:
    declared   that signature
    ones       every integer argument 1, typed as the JIT types a 1: a compile-time constant (which has no
               .to()), or i32 for the parameters in the kernel's do_not_specialize
A scalar fp64 in a signature is refused: the JIT passes every Python float as fp32, so such a kernel would
compute in another precision on the GPU than the signature (and the CPU interpreter, which keeps the double)
says. A kernel that needs a double takes its bits (electra_fast.triton.random.float64_bits).

Targets: sm_80 (A100), sm_90 (H100), sm_100 (B200) and sm_120 (RTX 50-series); Triton 3.7.1 compiles all
four here (with the ptxas it ships), about 10 s per target on 2 cores.

    python tools/triton_aot_check.py [--arch 80 90 100 120]
"""
import argparse
import importlib
import pkgutil
import sys
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import electra_fast.triton as triton_pkg


def kernels():
    for info in pkgutil.iter_modules(triton_pkg.__path__):
        module = importlib.import_module(f"{triton_pkg.__name__}.{info.name}")
        for kernel, signature, constexprs in getattr(module, "AOT_KERNELS", []):
            yield info.name, kernel, signature, constexprs


_INTEGERS = {"i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"}


def variants(kernel, signature, constexprs):
    """(label, signature, constexprs) of each compile of one AOT_KERNELS entry (see the module docstring)."""
    scalar_fp64 = [name for name, ty in signature.items() if ty == "fp64"]
    if scalar_fp64:
        raise TypeError(f"scalar fp64 parameter(s) {scalar_fp64}: the JIT passes a Python float as fp32; "
                        "pass the double's bits (float64_bits) and bitcast them in the kernel")
    yield "declared", signature, constexprs
    unspecialised = {param.name for param in kernel.params if param.do_not_specialize}
    ones_sig, ones_const = dict(signature), dict(constexprs)
    for name, ty in signature.items():
        if ty in _INTEGERS:
            if name in unspecialised:
                ones_sig[name] = "i32"
            else:
                ones_sig[name], ones_const[name] = "constexpr", 1
    yield "ones", ones_sig, ones_const


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", type=int, default=[80, 90, 100, 120], help="compute capabilities")
    args = parser.parse_args(argv)
    failures, count = 0, 0
    for module, kernel, signature, constexprs in kernels():
        for arch in args.arch:
            count += 1
            name = f"{module}.{kernel.fn.__name__ if hasattr(kernel, 'fn') else kernel.__name__}[sm_{arch}]"
            t0 = time.perf_counter()
            try:
                sizes = []
                for label, sig, const in variants(kernel, signature, constexprs):
                    try:
                        compiled = triton.compile(ASTSource(kernel, sig, const), target=GPUTarget("cuda", arch, 32))
                    except Exception as exc:
                        raise RuntimeError(f"{label}: {type(exc).__name__}: {exc}") from exc.__cause__
                    sizes.append(f"{label} {len(compiled.asm['cubin'])}")
                print(f"ok    {name}: cubin bytes {', '.join(sizes)}, {time.perf_counter() - t0:.1f}s")
            except Exception as exc:  # report every failure, then fail
                failures += 1
                cause = f" (cause: {exc.__cause__!r})" if exc.__cause__ else ""
                print(f"FAIL  {name}: {exc}{cause}")
    if count == 0:
        print("no Triton kernels found")
        return 1
    print(f"triton AOT: {count - failures} kernels compiled, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
