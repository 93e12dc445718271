"""Sampled-token replacement: electra_fast.sample_replace vs the official dense Gumbel-argmax, torch.multinomial
on softmax and torch.compile(dense Gumbel), against the floor (one read of the logits: logits.amax(-1)),
all timed in the same run; plus mask_tokens and the statistical samplers' tokens/s at B x T = 128 x 128
and 128 x 512, against the reference backend.

Baselines (what ELECTRA implementations write; they return the [M] sampled ids only, ours also scatters
them into the [B, T] batch and computes is_replaced):
    gumbel       (logits.float() / T - log(-log(rand + 1e-9) + 1e-9)).argmax(-1)    (google-research/electra)
    multinomial  torch.multinomial(softmax(logits.float() / T), 1)
    floor        logits.amax(-1)

    python benchmarks/bench_replace.py [--quick] [--backends cpp] [--out DIR]
Writes benchmarks/results/replace.csv|json.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from common import compiled, parse_args, print_table, time_fn, write_results  # noqa: E402

from electra_fast import backend, samplers  # noqa: E402
from electra_fast import functional as F  # noqa: E402

B, T, V = 128, 128, 30522
MASK_ID, SPECIALS = 103, (0, 101, 102)


def default_backends():
    names = ["cpp"] if "cpp" in backend.available("cpu") else []
    if torch.cuda.is_available():
        names += [n for n in ("cuda", "triton") if n in backend.available("cuda")]
    return names


def gumbel_argmax(logits, temperature: float = 1.0):
    u = torch.rand(logits.shape, device=logits.device)
    return (logits.float() / temperature - torch.log(-torch.log(u + 1e-9) + 1e-9)).argmax(-1)


def multinomial(logits, temperature: float = 1.0):
    return torch.multinomial(torch.softmax(logits.float() / temperature, -1), 1).squeeze(1)


def batch(device, b=B, t=T):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, V, (b, t), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    return ids.to(device), torch.ones(b, t, dtype=torch.bool, device=device)


def bench_sampling(device, backends, quick):
    ids, am = batch(device)
    m = 256 if quick else round(0.15 * B * T)  # 2458: ELECTRA's 15% of a 128 x 128 batch
    is_masked = torch.zeros(B * T, dtype=torch.bool)
    is_masked[torch.randperm(B * T, generator=torch.Generator().manual_seed(2))[:m]] = True
    is_masked = is_masked.view(B, T).to(device)
    rows = []
    gumbel_compiled = compiled(gumbel_argmax)
    for dtype in (torch.float32, torch.bfloat16):
        logits = (torch.randn(m, V, generator=torch.Generator().manual_seed(1)) * 2).to(device, dtype)
        impls = {"floor": lambda: logits.amax(-1), "gumbel": lambda: gumbel_argmax(logits),
                 "multinomial": lambda: multinomial(logits), "gumbel_compiled": lambda: gumbel_compiled(logits)}
        for name in backends:
            def ours(name=name):
                with backend.use(name):
                    return F.sample_replace(logits, ids, is_masked, seed=3)
            impls[name] = ours
        for impl, fn in impls.items():
            timing = time_fn(fn, quick=quick, warmup=2, repeats=10 if impl in ("gumbel", "multinomial") else 20,
                             min_seconds=0.5)
            rows.append({"op": "sample_replace", "M": m, "V": V, "dtype": str(dtype).replace("torch.", ""),
                         "device": device, "impl": impl, **timing.as_dict(),
                         "note": gumbel_compiled.note if impl == "gumbel_compiled" else ""})
    base = {(r["dtype"], r["impl"]): r["ms"] for r in rows}
    for r in rows:
        r["speedup_vs_gumbel"] = base[(r["dtype"], "gumbel")] / r["ms"]
        r["x_floor"] = r["ms"] / base[(r["dtype"], "floor")]
    return rows


def bench_statistical(device, backends, quick):
    rows = []
    for b, t in ([(16, T)] if quick else [(B, T), (B, 512)]):
        rows += bench_statistical_shape(device, backends, quick, b, t)
    base = {(r["sampler"], r["B"], r["T"]): r["ms"] for r in rows if r["impl"] == "reference"}
    for r in rows:
        r["speedup_vs_reference"] = base[(r["sampler"], r["B"], r["T"])] / r["ms"]
    return rows


def bench_statistical_shape(device, backends, quick, b, t):
    ids, am = batch(device, b=b, t=t)
    counts = torch.randint(1, 10000, (V,)).double() ** 1.5  # a skewed, Zipf-like frequency table
    kinds = {"uniform": samplers.UniformSampler(V, exclude_ids=SPECIALS),
             "unigram": samplers.UnigramSampler.from_counts(counts, exclude_ids=SPECIALS),
             "cluster": samplers.ClusterSampler.from_frequencies(counts, 100, exclude_ids=SPECIALS)}
    rows = []
    for name in ["reference"] + backends:
        for kind, sampler in [("mask_tokens", None)] + list(kinds.items()):
            if sampler is not None:
                sampler.to(device)

            def run(name=name, sampler=sampler):
                with backend.use(name):
                    if sampler is None:
                        return F.mask_tokens(ids, am, mask_token_id=MASK_ID, special_token_ids=SPECIALS, seed=1)
                    return F.statistical_replace(ids, am, sampler, special_token_ids=SPECIALS, seed=1)
            timing = time_fn(run, quick=quick, repeats=20, min_seconds=0.3)
            rows.append({"op": "statistical_replace" if sampler is not None else "mask_tokens", "sampler": kind,
                         "B": b, "T": t, "device": device, "impl": name, **timing.as_dict(),
                         "tokens_per_s": b * t / timing.median})
    return rows


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], default_backends(), argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = bench_sampling(device, args.backends, args.quick)
    print_table(rows, ["M", "V", "dtype", "impl", "ms", "p10_ms", "p90_ms", "speedup_vs_gumbel", "x_floor"])
    stat_rows = bench_statistical(device, args.backends, args.quick)
    print_table(stat_rows, ["op", "sampler", "B", "T", "impl", "ms", "tokens_per_s", "speedup_vs_reference"])
    for path in write_results("replace", rows + stat_rows, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
