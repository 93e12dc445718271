"""Where the time of one ELECTRA pre-training step goes, ours and the Hugging Face baseline, per op category.

Both sides are the runners of bench_train_step.py (ours: ElectraForPretraining without early exit; HF:
ElectraForMaskedLM + ElectraForPreTraining with dense Gumbel sampling), on the same batches of the bundled
corpus, [batch, seq_len] token ids. After `warmup` untimed steps each, `steps` steps of each run under
torch.profiler (CPU activity). Runner.step marks its phases with the ranges bench_train_step.PHASES
(forward, backward, optimizer.step + zero_grad); every profiled event's self CPU time goes to the phase
it ran under and to a category (`categorise`). Self times partition the phase, so the categories of a
step add up to its profiled time.

Rows (profile_step.csv/json): family (ours | hf), phase, category, ms per step, share of the profiled
step, op calls per step. The profiler costs a few microseconds per op, so a profiled step is slower than
a timed one, the more so the more ops it runs: the step times to quote come from bench_train_step.py.

    python benchmarks/profile_step.py [--quick] [--preset small] [--batch 8] [--seq-len 128] [--steps 3] [--out DIR]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_step import PHASES, build_runners, load_corpus  # noqa: E402

CATEGORIES = ("gemm", "attention", "dropout", "layernorm", "gelu", "copies", "elementwise", "optimizer",
              "our_kernels", "overhead", "other")
GEMM = frozenset({"mm", "addmm", "addmm_", "_addmm_activation", "bmm", "baddbmm", "addbmm", "matmul", "linear",
                  "mv", "addmv", "dot"})
COPIES = frozenset({"copy_", "contiguous", "to", "_to_copy", "clone", "cat", "stack"})
ELEMENTWISE = frozenset({
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "abs", "exp", "log", "log_", "sqrt",
    "rsqrt", "pow", "reciprocal", "tanh", "sigmoid", "where", "masked_fill", "masked_fill_", "fill_", "zero_",
    "clamp", "clamp_min", "clamp_max", "lerp_", "addcmul_", "addcdiv_", "eq", "ne", "lt", "le", "gt", "ge",
    "logical_and", "logical_or", "logical_not", "bitwise_and", "bitwise_or", "bitwise_not", "isneginf", "isinf",
    "isnan", "sum", "mean", "all", "any", "max", "min", "argmax", "amax", "sign"})
AUTOGRAD_PREFIX = "autograd::engine::evaluate_function: "


def _base(name: str) -> str:
    """`aten::native_layer_norm` -> native_layer_norm; `autograd::engine::evaluate_function: GeluBackward0` ->
    gelubackward0."""
    if name.startswith(AUTOGRAD_PREFIX):
        name = name[len(AUTOGRAD_PREFIX):]
    return name.rsplit("::", 1)[-1].strip().lower()


def _region(name: str) -> Optional[str]:
    """The fusable op family an op or autograd node belongs to, with everything it calls, or None."""
    base = _base(name)
    if "dropout" in base or base.startswith("bernoulli"):
        return "dropout"
    if "layer_norm" in base or "layernorm" in base:
        return "layernorm"
    if "gelu" in base:
        return "gelu"
    if "scaled_dot_product" in base or ("softmax" in base and "log_softmax" not in base and "logsoftmax" not in base):
        return "attention"
    return None


def _is_op(name: str) -> bool:
    """A dispatcher op (aten::, electra_fast::, ...), not a range, an autograd node or the engine's wrapper."""
    return "::" in name and not name.startswith(("autograd::", "torch::autograd::"))


def categorise(name: str, ancestors: Sequence[str] = ()) -> str:
    """The category of one profiled event's self time, from its name and its ancestors' (innermost first).

    Precedence: anything under one of our ops (electra_fast::*, electra_fast_C::*, their autograd wrappers and
    C++ autograd nodes) is our_kernels, anything under optimizer.step/zero_grad is
    optimizer; a GEMM is gemm wherever it runs (so attention's bmm counts as GEMM, forward and backward
    alike); then the nearest fusable family among the event and its ancestors (dropout: bernoulli_ and the
    scaling inside aten::dropout; layernorm; gelu; attention: SDPA with its softmax and mask checks, and
    softmax elsewhere); then copies, element-wise ops and reductions; self time outside any op (Python,
    autograd nodes and engine) is overhead; the rest is other. The backward of a non-fused dropout is a plain
    MulBackward0, so it counts as element-wise."""
    chain = (name, *ancestors)
    if any("electra_fast" in n for n in chain):
        return "our_kernels"
    base = _base(name)
    if base.startswith(("_foreach_", "_fused_adam")) or any(n == PHASES[2] or n.startswith("Optimizer.")
                                                             for n in chain):
        return "optimizer"
    if _is_op(name) and base in GEMM:
        return "gemm"
    region = next((r for r in map(_region, chain) if r is not None), None)
    if region is not None:
        return region
    if not _is_op(name):
        return "overhead"
    if base in COPIES:
        return "copies"
    if base in ELEMENTWISE:
        return "elementwise"
    return "other"


def _ancestors(event) -> List[str]:
    names = []
    parent = event.cpu_parent
    while parent is not None:
        names.append(parent.name)
        parent = parent.cpu_parent
    return names


def breakdown(events) -> Dict[tuple, List[float]]:
    """{(phase, category, op name): [self microseconds, op calls]} summed over the profiled events that ran
    under a phase range (events outside every phase are not part of a step)."""
    totals: Dict[tuple, List[float]] = defaultdict(lambda: [0.0, 0])
    for event in events:
        ancestors = _ancestors(event)
        phase = next((n for n in (event.name, *ancestors) if n in PHASES), None)
        if phase is None:
            continue
        cell = totals[(phase, categorise(event.name, ancestors), event.name)]
        cell[0] += event.self_cpu_time_total
        cell[1] += _is_op(event.name)
    return totals


def rows_of(family: str, totals: Dict[tuple, List[float]], steps: int, top_ops: int) -> List[Dict[str, object]]:
    """Category rows (phase x category) and the `top_ops` ops with the most self time, per step."""
    step_us = sum(us for us, _ in totals.values())
    by_category: Dict[tuple, List[float]] = defaultdict(lambda: [0.0, 0])
    by_op: Dict[tuple, List[float]] = defaultdict(lambda: [0.0, 0])
    for (phase, category, name), (us, calls) in totals.items():
        for table, key in ((by_category, (phase, category)), (by_op, (name, category))):
            table[key][0] += us
            table[key][1] += calls

    def row(section, us, calls, **keys):
        return {"section": section, "family": family, **keys, "ms_per_step": us / 1e3 / steps,
                "share_of_step": us / step_us if step_us else 0.0, "calls_per_step": calls / steps}

    rows = [row("category", *by_category[(phase, category)], phase=phase.rsplit(".", 1)[-1], category=category)
            for phase in PHASES for category in CATEGORIES if (phase, category) in by_category]
    ranked = sorted(by_op.items(), key=lambda kv: -kv[1][0])[:top_ops]
    rows += [row("op", us, calls, op=name, category=category) for (name, category), (us, calls) in ranked]
    return rows


def profile_step(preset: str = "small", batch: int = 8, seq_len: int = 128, steps: int = 3, *, warmup: int = 2,
                 top_ops: int = 15) -> List[Dict[str, object]]:
    """Profile `steps` steps of ours and of HF (dense Gumbel) at [batch, seq_len] after `warmup` steps each;
    the rows of rows_of for both, with preset/batch/seq_len/steps on each."""
    from torch.profiler import ProfilerActivity, profile

    from electra_fast.models import ElectraConfig

    corpus = load_corpus(ElectraConfig.preset(preset).vocab_size, batch, seq_len, warmup + steps)
    runners = build_runners(preset, corpus, keeps=(), thresholds=(), statistical=(), hf_samplings=("gumbel",))
    rows: List[Dict[str, object]] = []
    for runner in runners:
        for k in range(warmup):
            runner.step(corpus.batches[k], record=False)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for k in range(steps):
                runner.step(corpus.batches[warmup + k], record=False)
        for row in rows_of(runner.family, breakdown(prof.events()), steps, top_ops):
            rows.append({**row, "preset": preset, "batch": batch, "seq_len": seq_len, "steps": steps})
    return rows


QUICK = dict(preset="tiny", batch=2, seq_len=32, steps=1, warmup=1)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    from common import RESULTS_DIR, write_results
    from report import profile_tables

    parser = argparse.ArgumentParser(description="per-category CPU profile of one training step, ours and HF")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else dict(preset=args.preset, batch=args.batch, seq_len=args.seq_len,
                                         steps=args.steps, warmup=args.warmup)
    rows = profile_step(**plan)
    print("\n".join(profile_tables(rows)))
    write_results("profile_step", rows, args.out)
    return rows


if __name__ == "__main__":
    main()
