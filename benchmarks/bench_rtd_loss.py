"""RTD loss: electra_fast's fused kernels vs eager torch vs torch.compile(eager), forward, backward, both.

The baseline is what an ELECTRA implementation writes (the mean over real tokens):
    per_token = F.binary_cross_entropy_with_logits(logits, labels_float, reduction="none")
    loss = (per_token * mask_float).sum() / mask_float.sum().clamp(min=1)
with labels and mask already float (their conversion is not timed: the baseline's best case). Ours
takes bool labels and mask (free to reinterpret; other dtypes cost a check and a conversion).
Logits require grad in every mode, as in training: "forward" is the training forward (ours computes
the gradient in the same pass), "backward" is loss.backward() alone, "both" is the training step.

    python benchmarks/bench_rtd_loss.py [--quick] [--backends cpp,triton] [--out DIR]
Writes benchmarks/results/rtd_loss.csv|json; prints a table of times and ratios.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

from common import add_speedups, compiled, parse_args, print_table, time_fn, write_results  # noqa: E402

from electra_fast import backend  # noqa: E402
from electra_fast import functional as F  # noqa: E402
from electra_fast.profiling import measure_peak_memory  # noqa: E402

SHAPES = [(128, 128), (128, 512)]
MODES = ("forward", "backward", "both")


def eager_rtd_loss(logits, labels, mask):
    per_token = TF.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def default_backends():
    """Every backend that runs at full speed here: the C++ kernel on CPU; CUDA and Triton on a GPU."""
    names = ["cpp"] if "cpp" in backend.available("cpu") else []
    if torch.cuda.is_available():
        names += [n for n in ("cuda", "triton") if n in backend.available("cuda")]
    return names


def make_inputs(shape, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g).to(device)
    labels = (torch.rand(shape, generator=g) < 0.15).to(device)
    lengths = torch.randint(shape[1] // 2, shape[1] + 1, (shape[0],), generator=g)
    mask = (torch.arange(shape[1])[None, :] < lengths[:, None]).to(device)
    return logits, labels, mask


def step_fns(loss_fn, logits):
    """(forward, backward, both) callables and the setups they need, for a loss of the leaf `logits`."""
    def fresh_leaf():
        logits.grad = None
        return logits

    def forward(leaf):
        return loss_fn(leaf)

    def forward_for_backward():
        return loss_fn(fresh_leaf())

    def backward(loss):
        loss.backward()

    def both(leaf):
        loss_fn(leaf).backward()

    return {"forward": (forward, fresh_leaf), "backward": (backward, forward_for_backward),
            "both": (both, fresh_leaf)}


def bench_shape(shape, device, backends, quick):
    logits, labels, mask = make_inputs(shape, device)
    leaf = logits.clone().requires_grad_(True)
    labels_f, mask_f = labels.float(), mask.float()
    ref_compiled = compiled(eager_rtd_loss)
    impls = {
        "eager": lambda x: eager_rtd_loss(x, labels_f, mask_f),
        "compiled": lambda x: ref_compiled(x, labels_f, mask_f),
    }
    for name in backends:
        def ours(x, name=name):
            with backend.use(name):
                return F.rtd_loss(x, labels, mask)
        impls[name] = ours

    # every implementation computes the same loss and gradient
    expected = None
    for name, fn in impls.items():
        leaf.grad = None
        loss = fn(leaf)
        loss.backward()
        got = (loss.detach().clone(), leaf.grad.clone())
        if expected is None:
            expected = got
        else:
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")

    rows = []
    for impl, fn in impls.items():
        fns = step_fns(fn, leaf)
        for mode in MODES:
            call, setup = fns[mode]
            timing = time_fn(call, setup=setup, quick=quick, repeats=100, min_seconds=0.5)
            _, peak = measure_peak_memory(call, setup())  # the argument tells it the device
            rows.append({"op": "rtd_loss", "B": shape[0], "T": shape[1], "device": device, "mode": mode,
                         "impl": impl, **timing.as_dict(), "peak_bytes": peak,
                         "note": ref_compiled.note if impl == "compiled" else ""})
    add_speedups(rows, ("eager", "compiled"))
    return rows


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], default_backends(), argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shapes = SHAPES[:1] if args.quick else SHAPES
    rows = []
    for shape in shapes:
        rows += bench_shape(shape, device, args.backends, args.quick)
    print_table(rows, ["B", "T", "mode", "impl", "ms", "p10_ms", "p90_ms", "speedup_vs_eager",
                       "speedup_vs_compiled", "peak_bytes"])
    for path in write_results("rtd_loss", rows, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
