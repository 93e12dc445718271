"""dropout_add_layer_norm: LayerNorm(dropout(x) + residual) fused vs torch's dropout + add + layer_norm (eager and
torch.compile) and vs electra_fast's dropout followed by torch's add + layer_norm, forward and forward+backward.

Shapes are the end of an ELECTRA residual block at batch 8 x 128: Small [8, 128, 256] and Base [8, 128, 768], p =
0.1. The masks differ between torch and ours (equally distributed), so rows agree in distribution, not element
for element. "saved_bytes" is what the forward keeps for the backward beyond its inputs and parameters.

    python benchmarks/bench_dropout_add_layer_norm.py [--quick] [--backends cpp,triton] [--out DIR]
Writes benchmarks/results/dropout_add_layer_norm.csv|json; prints a table of times and ratios.
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
from electra_fast import functional as F  # noqa: E402

SHAPES = {"small": (8, 128, 256), "base": (8, 128, 768)}
P = 0.1
EPS = 1e-12


def bench_shape(name, shape, device, backends, quick):
    n = shape[-1]
    x = torch.randn(shape, device=device, requires_grad=True)
    r = torch.randn(shape, device=device, requires_grad=True)
    w = torch.ones(n, device=device, requires_grad=True)
    b = torch.zeros(n, device=device, requires_grad=True)
    inputs = (x, r, w, b)
    seed = iter(range(1, 1 << 40))

    def eager(x, r, w, b):
        return TF.layer_norm(TF.dropout(x, P, training=True) + r, (n,), w, b, EPS)

    torch_compiled = compiled(eager)
    impls = {"eager": eager, "compiled": torch_compiled}
    for name_b in backends:
        def unfused(x, r, w, b, name_b=name_b):
            with backend.use(name_b):
                return TF.layer_norm(F.dropout(x, P, seed=next(seed)) + r, (n,), w, b, EPS)

        def ours(x, r, w, b, name_b=name_b):
            with backend.use(name_b):
                return F.dropout_add_layer_norm(x, r, w, b, P, eps=EPS, seed=next(seed))

        impls[f"{name_b}-dropout+torch"] = unfused
        impls[name_b] = ours

    up = torch.randn(shape, device=device)
    rows = []
    for impl, fn in impls.items():
        def forward(fn=fn):
            with torch.no_grad():
                return fn(*inputs)

        def both(fn=fn):
            for t in inputs:
                t.grad = None
            fn(*inputs).backward(up)

        for mode, call in (("forward", forward), ("both", both)):
            timing = time_fn(call, quick=quick, repeats=50, min_seconds=0.5)
            rows.append({"op": "dropout_add_layer_norm", "shape": "x".join(map(str, shape)), "case": name,
                         "device": device, "mode": mode, "impl": impl, **timing.as_dict(),
                         "saved_bytes": saved_bytes(fn, inputs),
                         "note": torch_compiled.note if impl == "compiled" else ""})
    add_speedups(rows, ("eager", "compiled"))
    return rows


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], default_backends(), argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cases = list(SHAPES.items())[:1] if args.quick else list(SHAPES.items())
    rows = []
    for name, shape in cases:
        rows += bench_shape(name, shape, device, args.backends, args.quick)
    print_table(rows, ["case", "shape", "mode", "impl", "ms", "p10_ms", "p90_ms", "speedup_vs_eager",
                       "speedup_vs_compiled", "saved_bytes"])
    for path in write_results("dropout_add_layer_norm", rows, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
