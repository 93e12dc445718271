"""H100 roofline PROJECTION of each op, ours vs the eager baseline — an estimate, not a measurement.

Until a GPU run exists, this stands in for the GPU section: for each op at its benchmark shape it
lists the kernels each implementation launches, with the bytes each reads and writes from HBM and the
FLOPs it does, counted from the shapes and the kernel's design (electra_fast/ops/*, csrc/, the op
issues) and from what eager PyTorch launches for the baseline. A kernel's projected time is its
roofline bound, max(bytes / HBM bandwidth, tensor FLOPs / tensor peak + scalar FLOPs / scalar peak),
plus a fixed launch latency; host synchronisations add a fixed round trip. Ops run in bf16 (the GPU
training dtype) except where a line says otherwise.

Assumptions (H100 SXM, stated so the first GPU run can check them):
    HBM 3.35 TB/s; dense bf16 tensor cores 990 TFLOP/s; fp32 non-tensor 67 TFLOP/s;
    3 us per kernel launch (eager dispatch + launch gap); 10 us per host synchronisation;
    per-element scalar costs: add/mul/compare 1, exp/log/sigmoid 4 (SFU), BCE 8;
    all traffic goes to HBM (no L2 reuse between kernels) — optimistic for nothing, pessimistic
    for chunked kernels whose chunk fits the 50 MB L2 (those get a second, "L2-resident" line).

    python benchmarks/roofline.py [--out DIR]    -> roofline.csv/.json (one row per op, case, impl)
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

# this directory (for `common`) and the checkout (so the scripts run without an install)
sys.path.insert(0, str(Path(__file__).resolve().parent))

HBM_BYTES_PER_S = 3.35e12
TENSOR_FLOPS = 990e12
SCALAR_FLOPS = 67e12
LAUNCH_S = 3e-6
SYNC_S = 10e-6
LABEL = "PROJECTION (H100 roofline estimate, not measured)"


@dataclass
class Kernel:
    """One kernel launch: HBM bytes read and written, tensor-core and scalar FLOPs."""

    name: str
    read: float
    written: float
    tensor_flops: float = 0.0
    scalar_flops: float = 0.0

    def seconds(self) -> float:
        compute = self.tensor_flops / TENSOR_FLOPS + self.scalar_flops / SCALAR_FLOPS
        return max((self.read + self.written) / HBM_BYTES_PER_S, compute) + LAUNCH_S


@dataclass
class Design:
    """An implementation of an op at one shape: its kernels in order and its host synchronisations."""

    op: str
    case: str
    impl: str
    kernels: List[Kernel]
    syncs: int = 0
    note: str = ""

    def seconds(self) -> float:
        return sum(k.seconds() for k in self.kernels) + self.syncs * SYNC_S

    def row(self) -> Dict[str, object]:
        return {
            "op": self.op, "case": self.case, "impl": self.impl, "label": LABEL,
            "kernels": len(self.kernels), "syncs": self.syncs,
            "hbm_mb": sum(k.read + k.written for k in self.kernels) / 1e6,
            "gflop": sum(k.tensor_flops + k.scalar_flops for k in self.kernels) / 1e9,
            "projected_us": self.seconds() * 1e6, "note": self.note,
        }


def elementwise(name: str, n: float, read_bytes: float, write_bytes: float, flops: float = 1.0) -> Kernel:
    """A pointwise kernel over n elements reading `read_bytes` and writing `write_bytes` per element."""
    return Kernel(name, n * read_bytes, n * write_bytes, scalar_flops=n * flops)


# ------------------------------------------------------------------------------------------- RTD loss
def rtd_loss(b: int, t: int) -> List[Design]:
    """Masked BCE forward + backward over [B, T] bf16 logits, bool labels and mask, mean reduction."""
    n = b * t
    case = f"{b}x{t} fwd+bwd"
    ours = Design("rtd_loss", case, "ours (fused)", [
        # forward: one read of logits, labels, mask; loss partial sums; grad for upstream 1 written
        Kernel("fwd: loss + grad", n * (2 + 1 + 1), n * 2 + 4096, scalar_flops=n * 12),
        Kernel("backward: grad * upstream", n * 2, n * 2, scalar_flops=n),
    ])
    eager = Design("rtd_loss", case, "eager reference", [
        elementwise("logits.float()", n, 2, 4),
        elementwise("labels.float()", n, 1, 4),
        elementwise("bce_with_logits", n, 8, 4, 8),
        elementwise("mask.float()", n, 1, 4),
        elementwise("loss * mask", n, 8, 4),
        elementwise("sum", n, 4, 0),
        elementwise("mask.sum", n, 1, 0),
        Kernel("divide", 16, 8),
        # backward through autograd: expand + mul by mask, bce backward, cast back
        elementwise("grad * mask", n, 4, 4),
        elementwise("bce backward", n, 12, 4, 6),
        elementwise("grad.to(bf16)", n, 4, 2),
    ])
    return [ours, eager]


# --------------------------------------------------------------------------------- sampled replacement
def sample_replace(m: int, v: int) -> List[Design]:
    """One sample per row of [M, V] bf16 logits."""
    n = m * v
    case = f"M={m} V={v}"
    ours = Design("sample_replace", case, "ours (inverse CDF)", [
        # pass 1: row max + normaliser; pass 2: the scan; nothing of size V written (sampling.h)
        Kernel("max + normaliser, scan", n * 2 * 2, m * 16, scalar_flops=n * 2 * 5),
    ], note="reads the logits twice; the scan usually stops before the row's end")
    gumbel = Design("sample_replace", case, "eager dense Gumbel (official)", [
        elementwise("rand", n, 0, 4),
        elementwise("u + 1e-9", n, 4, 4),
        elementwise("log", n, 4, 4, 4),
        elementwise("neg", n, 4, 4),
        elementwise("+ 1e-9", n, 4, 4),
        elementwise("log", n, 4, 4, 4),
        elementwise("neg", n, 4, 4),
        elementwise("logits / T", n, 2, 2),
        elementwise("+ noise", n, 6, 4),
        elementwise("argmax", n, 4, 0),
    ])
    multinomial = Design("sample_replace", case, "eager softmax + multinomial", [
        elementwise("softmax (fp32)", n, 2, 4, 5),
        elementwise("multinomial: cumsum + search", n, 8, 4, 2),
    ])
    return [ours, gumbel, multinomial]


# ------------------------------------------------------------------------------------- generator head
def generator_head(m: int, e: int, v: int, chunk: int = 256) -> List[Design]:
    """Tied projection + cross-entropy + gradients (hidden, weight, bias) + one sample per row, bf16."""
    n = m * v
    gemm = 2.0 * m * e * v
    w_bytes = v * e * 2
    case = f"M={m} E={e} V={v}"
    chunks = -(-m // chunk)

    def ours(l2_resident: bool) -> Design:
        # per chunk: logits GEMM -> row kernel (loss, sample, softmax grad in place) -> two grad GEMMs
        logit_traffic = 0 if l2_resident else 1
        kernels = [
            Kernel("logits GEMMs (chunks)", m * e * 2 + chunks * w_bytes, n * 2 * logit_traffic, tensor_flops=gemm),
            Kernel("row kernels: CE + sample + grad in place", n * 2 * 2 * logit_traffic, n * 2 * logit_traffic,
                   scalar_flops=n * 12),
            Kernel("grad_hidden GEMMs", n * 2 * logit_traffic + chunks * w_bytes, m * e * 4, tensor_flops=gemm),
            Kernel("grad_weight GEMMs", n * 2 * logit_traffic + m * e * 2, chunks * w_bytes * 2, tensor_flops=gemm),
        ]
        launches = [Kernel("per-chunk launches", 0, 0) for _ in range(4 * (chunks - 1))]
        name = "ours (chunked, L2-resident chunks)" if l2_resident else "ours (chunked, via HBM)"
        return Design("generator_head", case, name, kernels + launches,
                      note=f"{chunks} chunks of {chunk} rows; [M,V] logits never held")

    eager = Design("generator_head", case, "eager linear + CE + dense Gumbel", [
        Kernel("logits GEMM", m * e * 2 + w_bytes, n * 2, tensor_flops=gemm),
        elementwise("log_softmax (fp32)", n, 2, 4, 5),
        Kernel("nll gather", m * 8, 4),
        elementwise("log_softmax backward", n, 8, 2, 3),
        Kernel("grad_hidden GEMM", n * 2 + w_bytes, m * e * 2, tensor_flops=gemm),
        Kernel("grad_weight GEMM", n * 2 + m * e * 2, w_bytes, tensor_flops=gemm),
    ] + sample_replace(m, v)[1].kernels)
    floor = Design("generator_head", case, "floor: the three GEMMs", [
        Kernel("logits GEMM", m * e * 2 + w_bytes, n * 2, tensor_flops=gemm),
        Kernel("grad_hidden GEMM", n * 2 + w_bytes, m * e * 2, tensor_flops=gemm),
        Kernel("grad_weight GEMM", n * 2 + m * e * 2, w_bytes, tensor_flops=gemm),
    ])
    return [ours(False), ours(True), eager, floor]


# ------------------------------------------------------------------------------------------ early exit
def early_exit(b: int, t: int, h: int, active: float) -> List[Design]:
    """Gather the active tokens of [B, T, H] bf16 hidden states, then scatter them back (restore)."""
    tokens = b * t
    n = int(tokens * active)
    case = f"{b}x{t}x{h} {int(active * 100)}% active"
    ours = Design("early_exit", case, "ours (gather + scatter)", [
        Kernel("exit mask + row prefix sums", tokens * (2 + 1), tokens * 1 + n * 8 + (b + 1) * 4, scalar_flops=tokens * 6),
        Kernel("gather rows", n * h * 2 + n * 8, n * h * 2),
        Kernel("scatter: copy base", tokens * h * 2, tokens * h * 2),
        Kernel("scatter rows", n * h * 2 + n * 8, n * h * 2),
    ], syncs=1, note="one host sync per exit layer to size the packed tensor")
    eager = Design("early_exit", case, "eager boolean indexing", [
        elementwise("sigmoid + confidence + compare", tokens, 2, 1, 6),
        Kernel("nonzero (gather)", tokens, n * 8),
        Kernel("index rows", n * h * 2 + n * 8, n * h * 2),
        Kernel("clone base", tokens * h * 2, tokens * h * 2),
        Kernel("nonzero (scatter)", tokens, n * 8),
        Kernel("index_put rows", n * h * 2 + n * 8, n * h * 2),
    ], syncs=2, note="hidden[mask] and out[mask] = x each synchronise the host")
    floor = Design("early_exit", case, "floor: copy active rows twice", [
        Kernel("index_select", n * h * 2 + n * 8, n * h * 2),
        Kernel("index_copy", n * h * 2 + n * 8, n * h * 2),
    ])
    return [ours, eager, floor]


def all_designs(quick: bool = False) -> List[Design]:
    """Every op at its benchmark shapes (the op issues' shapes; quick keeps the first of each)."""
    designs: List[Design] = []
    designs += rtd_loss(128, 512)
    designs += sample_replace(2458, 30522)
    designs += generator_head(2458, 128, 30522)
    designs += early_exit(128, 128, 256, 0.5)
    if not quick:
        designs += rtd_loss(128, 128)
        designs += generator_head(4915, 768, 30522)
        designs += early_exit(32, 512, 768, 0.5)
    return designs


def projection_rows(quick: bool = False) -> List[Dict[str, object]]:
    """One row per (op, case, impl) with projected_us and, per case, the eager/ours ratio."""
    rows = [d.row() for d in all_designs(quick)]
    for row in rows:
        same_case = [r for r in rows if r["op"] == row["op"] and r["case"] == row["case"]]
        eager = next(r for r in same_case if r["impl"].startswith("eager"))
        row["projected_speedup_vs_eager"] = eager["projected_us"] / row["projected_us"]
    return rows


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    from common import RESULTS_DIR, print_table, write_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    rows = projection_rows(args.quick)
    print(LABEL)
    print_table(rows, ["op", "case", "impl", "kernels", "syncs", "hbm_mb", "gflop", "projected_us",
                       "projected_speedup_vs_eager"])
    write_results("roofline", rows, args.out)
    return rows


if __name__ == "__main__":
    main()
