"""Fused generator head: electra_fast vs eager torch vs torch.compile(eager) vs the GEMM floor.

One training step of the generator's output layer, forward + backward + one sample per row, with
hidden [M, E], the tied embedding weight [V, E] and bias [V] all requiring grad:
    eager_gumbel       logits = F.linear(h, W, b); loss = F.cross_entropy(logits, t); loss.backward();
                       samples = argmax(logits - log(-log(U + 1e-9) + 1e-9)) under no_grad (official ELECTRA)
    eager_multinomial  the same with torch.multinomial(softmax(logits), 1)
    compiled_gumbel    torch.compile(eager_gumbel's forward), backward through its compiled graph
    ours               electra_fast.functional.generator_head(h, W, b, t, seed=...) + loss.backward()
    floor              the three GEMMs alone, unchunked: h @ W.T, dx @ W, dx.T @ h (no softmax, no sample)
Shapes: ELECTRA-Small's generator (M = 2458 masked of 128x128 at 15%, E = 128, V = 30522) and Base's
(M = 4915 of 256x128, E = 768). Every figure is a ratio against a baseline timed in the same run;
peak memory (electra_fast.profiling.measure_peak_memory) is a separate, untimed run. A chunk-size sweep
of ours at the first shape shows what chunking costs.

    python benchmarks/bench_generator_head.py [--quick] [--backends cpp] [--out DIR]
Writes benchmarks/results/generator_head.csv|json; prints a table of times and ratios.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

from common import compiled, make_parser, print_table, time_fn, write_results  # noqa: E402

from electra_fast import backend  # noqa: E402
from electra_fast import functional as F  # noqa: E402
from electra_fast.ops.generator_head import auto_chunk_size  # noqa: E402
from electra_fast.profiling import measure_peak_memory  # noqa: E402

SHAPES = {"small": (2458, 128, 30522), "base": (4915, 768, 30522)}
QUICK_SHAPE = {"small/4": (614, 128, 30522)}
CHUNK_SWEEP = (128, 256, 512, 1024, 2048)


def default_backends():
    names = ["cpp"] if "cpp" in backend.available("cpu") else []
    if torch.cuda.is_available():
        names += [n for n in ("cuda", "triton") if n in backend.available("cuda")]
    return names


def make_inputs(m, e, v, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(m, e, generator=g)).to(device).requires_grad_()
    weight = (torch.randn(v, e, generator=g) * e ** -0.5).to(device).requires_grad_()
    bias = torch.zeros(v, device=device, requires_grad=True)
    targets = torch.randint(0, v, (m,), generator=g).to(device)
    return hidden, weight, bias, targets


def gumbel_sample(logits):
    u = torch.rand_like(logits)
    return (logits - torch.log(-torch.log(u + 1e-9) + 1e-9)).argmax(-1)


def eager_forward(hidden, weight, bias, targets):
    logits = TF.linear(hidden, weight, bias)
    loss = TF.cross_entropy(logits, targets)
    with torch.no_grad():
        samples = gumbel_sample(logits.detach())
    return loss, samples


def eager_multinomial_forward(hidden, weight, bias, targets):
    logits = TF.linear(hidden, weight, bias)
    loss = TF.cross_entropy(logits, targets)
    with torch.no_grad():
        samples = torch.multinomial(torch.softmax(logits.detach(), -1), 1).squeeze(1)
    return loss, samples


def floor_step(hidden, weight, bias, targets):
    with torch.no_grad():
        x = hidden @ weight.t()
        x @ weight
        x.t() @ hidden


def bench_shape(label, shape, device, backends, quick, sweep):
    m, e, v = shape
    inputs = make_inputs(m, e, v, device)
    leaves = inputs[:3]
    compiled_fwd = compiled(eager_forward)
    steps = {
        "floor": floor_step,
        "eager_gumbel": eager_forward,
        "eager_multinomial": eager_multinomial_forward,
        "compiled_gumbel": compiled_fwd,
    }
    for name in backends:
        def ours(h, w, b, t, name=name, chunk=None):
            with backend.use(name):
                return F.generator_head(h, w, b, t, seed=1, chunk_size=chunk)
        steps[name] = ours
        if sweep:
            for c in CHUNK_SWEEP:
                steps[f"{name}_chunk{c}"] = lambda h, w, b, t, ours=ours, c=c: ours(h, w, b, t, chunk=c)

    def train_step(fwd):
        def step():
            for leaf in leaves:
                leaf.grad = None
            out = fwd(*inputs)
            if out is not None:
                out[0].backward()
        return step

    repeats = 3 if quick else (3 if e > 256 else 5)
    rows = []
    for impl, fwd in steps.items():
        if quick and impl == "eager_multinomial":
            continue  # ~1.7 s a call at the Small shape: full runs only
        step = train_step(fwd)
        timing = time_fn(step, quick=False, warmup=1, repeats=repeats, min_seconds=0.0)
        _, peak = measure_peak_memory(step)
        rows.append({"op": "generator_head", "shape": label, "M": m, "E": e, "V": v, "device": device,
                     "impl": impl, **timing.as_dict(), "peak_bytes": peak,
                     "chunk_rows": auto_chunk_size(v, e) if impl in backends else "",
                     "note": compiled_fwd.note if impl == "compiled_gumbel" else ""})
        print(f"  {label} {impl}: {timing.median * 1e3:.1f} ms, peak {peak / 2**20:.1f} MiB", flush=True)
    base = {r["impl"]: r for r in rows}
    for r in rows:
        r["ratio_to_floor"] = r["ms"] / base["floor"]["ms"]
        r["speedup_vs_eager_gumbel"] = base["eager_gumbel"]["ms"] / r["ms"]
        if "eager_multinomial" in base:
            r["speedup_vs_eager_multinomial"] = base["eager_multinomial"]["ms"] / r["ms"]
        r["speedup_vs_compiled"] = base["compiled_gumbel"]["ms"] / r["ms"]
        r["memory_reduction_vs_eager"] = base["eager_gumbel"]["peak_bytes"] / max(r["peak_bytes"], 1)
    return rows


def main(argv=None):
    parser = make_parser(__doc__.splitlines()[0], default_backends())
    parser.add_argument("--shapes", default=None, help=f"comma-separated subset of {list(SHAPES)}")
    args = parser.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shapes = QUICK_SHAPE if args.quick else {k: SHAPES[k] for k in (args.shapes.split(",") if args.shapes else SHAPES)}
    rows = []
    for i, (label, shape) in enumerate(shapes.items()):
        rows += bench_shape(label, shape, device, args.backends, args.quick, sweep=i == 0 and not args.quick)
    print_table(rows, ["shape", "impl", "ms", "p10_ms", "p90_ms", "ratio_to_floor", "speedup_vs_eager_gumbel",
                       "speedup_vs_eager_multinomial", "speedup_vs_compiled", "peak_bytes",
                       "memory_reduction_vs_eager"])
    for path in write_results("generator_head", rows, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
