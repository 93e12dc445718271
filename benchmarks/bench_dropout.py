"""Dropout: electra_fast's Philox dropout vs torch's dropout (eager and torch.compile), forward and forward+backward.

Shapes are the two dropouts of an ELECTRA-Small layer at batch 8 x 128: the hidden states [8, 128, 256] and the
attention probabilities [8, 4, 128, 128]. Ours and torch's draw different (equally distributed) masks, so the
rows agree in the kept fraction, not element for element. "saved_bytes" is what the forward keeps for the
backward beyond the input: torch's dropout a bool mask, ours nothing (the backward draws the mask again).

    python benchmarks/bench_dropout.py [--quick] [--backends cpp,triton] [--out DIR]
Writes benchmarks/results/dropout.csv|json; prints a table of times and ratios.
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

SHAPES = {"hidden": (8, 128, 256), "attention": (8, 4, 128, 128)}
P = 0.1
MODES = ("forward", "both")


def bench_shape(name, shape, device, backends, quick):
    x = torch.randn(shape, device=device, requires_grad=True)
    torch_compiled = compiled(lambda t: TF.dropout(t, P, training=True))
    impls = {"eager": lambda t: TF.dropout(t, P, training=True), "compiled": torch_compiled}
    seed = iter(range(1, 1 << 40))
    for b in backends:
        def ours(t, b=b):
            with backend.use(b):
                return F.dropout(t, P, seed=next(seed))
        impls[b] = ours

    rows = []
    for impl, fn in impls.items():
        kept = (fn(x) != 0).float().mean().item()
        assert abs(kept - (1 - P)) < 0.01, f"{impl}: kept {kept:.3f} of the elements, expected {1 - P}"

        def forward(fn=fn):
            return fn(x)

        def both(fn=fn):
            x.grad = None
            fn(x).backward(torch.ones_like(x))

        for mode, call in (("forward", forward), ("both", both)):
            timing = time_fn(call, quick=quick, repeats=50, min_seconds=0.5)
            rows.append({"op": "dropout", "shape": "x".join(map(str, shape)), "case": name, "device": device,
                         "mode": mode, "impl": impl, **timing.as_dict(), "saved_bytes": saved_bytes(fn, (x,)),
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
    for path in write_results("dropout", rows, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
