"""Bias + GELU: electra_fast's fused bias_gelu vs torch's GELU (eager and torch.compile), forward and forward+backward.

Shapes are the FFN activations of ELECTRA at batch 8 x 128: 1024 rows of 1024 (Small) and of 3072 (Base). Two cases
per shape: "bias_gelu" times the activation alone (torch: F.gelu(x + b)); "ffn" times it after the FFN's first
linear layer, as the model uses it (torch: F.gelu(F.linear(a, W, b)), where addmm copies the broadcast bias into
its output first; ours: bias_gelu(F.linear(a, W), b)), so that the GEMM is in both. torch.compile compiles the
torch formula. "saved_bytes" is what autograd keeps for the backward other than x (W, the bias, activations).

    python benchmarks/bench_bias_gelu.py [--quick] [--backends cpp,triton] [--out DIR]
Writes benchmarks/results/bias_gelu.csv|json; prints a table of times and ratios.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

from bench_rtd_loss import default_backends  # noqa: E402
from common import add_speedups, compiled, parse_args, print_table, saved_bytes, time_fn, write_results  # noqa: E402

from electra_fast import backend  # noqa: E402
from electra_fast.functional import bias_gelu  # noqa: E402

ROWS = 8 * 128
SHAPES = {"small": (ROWS, 1024), "base": (ROWS, 3072)}  # (rows, FFN width); the hidden size is a quarter of it


def _torch_impls(case):
    """The eager torch formula of `case` and its torch.compile."""
    if case == "bias_gelu":
        def eager(x, w, b):
            return TF.gelu(x + b)
    else:
        def eager(x, w, b):
            return TF.gelu(TF.linear(x, w, b))
    return {"eager": eager, "compiled": compiled(eager)}


def _ours(case, name):
    def ours(x, w, b):
        with backend.use(name):
            return bias_gelu(x if case == "bias_gelu" else TF.linear(x, w), b)
    return ours


def bench_case(case, size, shape, device, backends, quick):
    rows_, width = shape
    g = torch.Generator().manual_seed(0)
    x_shape = (rows_, width) if case == "bias_gelu" else (rows_, width // 4)
    x = torch.randn(x_shape, generator=g).to(device).requires_grad_()
    w = (torch.randn(width, width // 4, generator=g) / (width // 4) ** 0.5).to(device).requires_grad_()
    b = torch.randn(width, generator=g).to(device).requires_grad_()
    impls = _torch_impls(case)
    impls.update({name: _ours(case, name) for name in backends})
    expected = impls["eager"](x, w, b).detach()
    rows = []
    for impl, fn in impls.items():
        torch.testing.assert_close(fn(x, w, b).detach(), expected, rtol=1e-4, atol=1e-4, msg=lambda m: f"{impl}: {m}")

        def forward(fn=fn):
            return fn(x, w, b)

        def both(fn=fn):
            x.grad = w.grad = b.grad = None
            fn(x, w, b).backward(torch.ones_like(expected))

        for mode, call in (("forward", forward), ("both", both)):
            timing = time_fn(call, quick=quick, repeats=50, min_seconds=0.5)
            rows.append({"op": "bias_gelu", "case": case, "size": size, "shape": "x".join(map(str, shape)),
                         "device": device, "mode": mode, "impl": impl, **timing.as_dict(),
                         "saved_bytes": saved_bytes(lambda t, fn=fn: fn(t, w, b), (x,)),
                         "note": impls["compiled"].note if impl == "compiled" else ""})
    add_speedups(rows, ("eager", "compiled"))
    return rows


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], default_backends(), argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = list(SHAPES.items())[:1] if args.quick else list(SHAPES.items())
    rows = []
    for size, shape in sizes:
        for case in ("bias_gelu", "ffn"):
            rows += bench_case(case, size, shape, device, args.backends, args.quick)
    print_table(rows, ["case", "size", "shape", "mode", "impl", "ms", "p10_ms", "p90_ms", "speedup_vs_eager",
                       "speedup_vs_compiled", "saved_bytes"])
    for path in write_results("bias_gelu", rows, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
