"""Early-exit gathering: gather_tokens and scatter_tokens (and exit_mask, select_tokens) vs what models do today.

For each B x T x H and fraction of active tokens, timed in the same run:
  gather   ours: F.gather_tokens(hidden, active)  (compaction + copy: tokens, index, cu_seqlens, max_seqlen)
           bool_index: hidden[active]             (HF-style eager; on a GPU it also synchronises the host)
           compile: torch.compile of hidden[active] (dynamic output shapes captured)
           floor: hidden.view(-1, H).index_select(0, index) with the index precomputed (the copy alone)
  scatter  ours: F.scatter_tokens(tokens, index, base)
           bool_index: out = base.clone(); out[active] = tokens
           compile: torch.compile of the same
           floor: base.view(-1, H).index_copy(0, index, tokens) (a new [B,T,H]: the copy alone)
  exit_mask ours vs the eager torch formula and its torch.compile.
  select   ours: F.select_tokens(hidden, logits, k), k = fraction * T tokens kept per row (select + gather)
           eager: topk of a composite int64 key (|logit| bits, position) + sort of the kept positions + gather
           compile: torch.compile of the same
           floor: hidden.view(-1, H).index_select(0, index) with the kept rows precomputed, plus one read
                  of the logits (logits.abs().sum()): the bytes the op cannot avoid
Targets: gather and scatter each <= 1.5x the floor and no slower than boolean indexing; select <= 1.5x the
floor on CPU.
Figures are ratios to baselines timed in the same run; results in benchmarks/results/early_exit.{csv,json}.

    python benchmarks/bench_early_exit.py [--quick] [--backends cpp] [--dtype float32]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch._dynamo  # noqa: E402

from common import compiled, make_parser, print_table, time_fn, write_results  # noqa: E402
from electra_fast import backend  # noqa: E402
from electra_fast import functional as F  # noqa: E402

SHAPES = [(128, 128, 256), (32, 512, 768)]
QUICK_SHAPES = [(16, 128, 256)]
FRACTIONS = (0.25, 0.5, 0.75)
THRESHOLD = 0.9


def bool_gather(hidden, active):
    return hidden[active]


def bool_scatter(tokens, active, base):
    out = base.clone()
    out[active] = tokens
    return out


def eager_exit_mask(logits, active):
    p = torch.sigmoid(logits.float())
    return active & (torch.maximum(p, 1 - p) < THRESHOLD)


def eager_select(hidden, logits, k):
    t = logits.shape[1]
    conf = logits.float().abs().view(torch.int32).to(torch.int64)
    key = (conf << 30) | torch.arange(t, device=logits.device)
    index = (key.topk(k, dim=1, largest=False).values & (2**30 - 1)).sort(dim=1).values
    return hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[2])), index


def floor_select(hidden, logits, flat):
    return hidden.view(-1, hidden.shape[2]).index_select(0, flat), logits.abs().sum()


def bench_case(shape, fraction, dtype, device, backends, quick, compiled_fns):
    b, t, h = shape
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(shape, generator=g).to(dtype).to(device)
    active = (torch.rand(b, t, generator=g) < fraction).to(device)
    logits = (torch.randn(b, t, generator=g) * 3).to(device)
    index = active.reshape(-1).nonzero().reshape(-1)
    tokens = hidden.reshape(-1, h).index_select(0, index) * 2
    label = {"shape": "x".join(map(str, shape)), "active": fraction, "dtype": str(dtype).replace("torch.", ""),
             "tokens": int(index.numel())}
    rows = []

    def row(op, impl, timing, baselines, **extra):
        r = {"op": op, "impl": impl, **label, **extra, **timing.as_dict()}
        for name, base in baselines.items():
            r[f"ratio_vs_{name}"] = timing.median / base.median
        # the 10th percentiles as well: on a shared machine they are the least disturbed by preemption
        for name, base in baselines.items():
            r[f"p10_ratio_vs_{name}"] = timing.p10 / base.p10
        rows.append(r)

    # gather
    floor = time_fn(lambda: hidden.view(-1, h).index_select(0, index), quick=quick)
    boolean = time_fn(lambda: bool_gather(hidden, active), quick=quick)
    comp = time_fn(lambda: compiled_fns["gather"](hidden, active), quick=quick)
    base = {"floor": floor, "bool_index": boolean, "compile": comp}
    row("gather", "floor_index_select", floor, base)
    row("gather", "bool_index", boolean, base)
    row("gather", "torch_compile", comp, base)
    for name in backends:
        with backend.use(name):
            row("gather", name, time_fn(lambda: F.gather_tokens(hidden, active), quick=quick), base)

    # scatter
    floor = time_fn(lambda: hidden.view(-1, h).index_copy(0, index, tokens), quick=quick)
    boolean = time_fn(lambda: bool_scatter(tokens, active, hidden), quick=quick)
    comp = time_fn(lambda: compiled_fns["scatter"](tokens, active, hidden), quick=quick)
    base = {"floor": floor, "bool_index": boolean, "compile": comp}
    row("scatter", "floor_index_copy", floor, base)
    row("scatter", "bool_index", boolean, base)
    row("scatter", "torch_compile", comp, base)
    for name in backends:
        with backend.use(name):
            row("scatter", name, time_fn(lambda: F.scatter_tokens(tokens, index, hidden), quick=quick), base)

    # exit decision
    eager = time_fn(lambda: eager_exit_mask(logits, active), quick=quick)
    comp = time_fn(lambda: compiled_fns["exit_mask"](logits, active), quick=quick)
    base = {"eager": eager, "compile": comp}
    row("exit_mask", "eager_formula", eager, base)
    row("exit_mask", "torch_compile", comp, base)
    for name in backends:
        with backend.use(name):
            row("exit_mask", name, time_fn(lambda: F.exit_mask(logits, active, threshold=THRESHOLD), quick=quick), base)

    # budgeted selection: `fraction` of each row kept
    k = round(t * fraction)
    kept = {"tokens": b * k}
    flat = (F.select_tokens(hidden, logits, k).index + torch.arange(b, device=device)[:, None] * t).reshape(-1)
    floor = time_fn(lambda: floor_select(hidden, logits, flat), quick=quick)
    eager = time_fn(lambda: eager_select(hidden, logits, k), quick=quick)
    comp = time_fn(lambda: compiled_fns["select"](hidden, logits, k), quick=quick)
    base = {"floor": floor, "eager": eager, "compile": comp}
    row("select", "floor_index_select", floor, base, **kept)
    row("select", "eager_formula", eager, base, **kept)
    row("select", "torch_compile", comp, base, **kept)
    for name in backends:
        with backend.use(name):
            row("select", name, time_fn(lambda: F.select_tokens(hidden, logits, k), quick=quick), base, **kept)
    return rows


def main(argv=None):
    parser = make_parser(__doc__.splitlines()[0], backends=["cpp"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.backends = [b for b in args.backends.split(",") if b]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and args.backends == ["cpp"]:
        args.backends = [n for n in ("cuda", "triton") if n in backend.available("cuda")]
    dtype = getattr(torch, args.dtype)
    # boolean indexing has a data-dependent output shape: let dynamo capture it instead of breaking the graph
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    compiled_fns = {"gather": compiled(bool_gather), "scatter": compiled(bool_scatter),
                    "exit_mask": compiled(eager_exit_mask), "select": compiled(eager_select)}
    rows = []
    for shape in QUICK_SHAPES if args.quick else SHAPES:
        for fraction in FRACTIONS:
            rows += bench_case(shape, fraction, dtype, device, args.backends, args.quick, compiled_fns)
    notes = [fn.note for fn in compiled_fns.values() if fn.note]
    for r in rows:
        r["note"] = "; ".join(notes)
    print_table(rows, ["op", "impl", "shape", "active", "ms", "p10_ms", "ratio_vs_floor", "ratio_vs_bool_index",
                       "ratio_vs_compile", "ratio_vs_eager", "p10_ratio_vs_floor", "p10_ratio_vs_bool_index"])
    name = "early_exit" + ("_quick" if args.quick else "") + (f"_{args.threads}thread" if args.threads else "")
    for path in write_results(name, rows, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
