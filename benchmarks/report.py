"""The Markdown summary of a benchmark run (the table the README quotes), from the results files.

    python benchmarks/report.py [--out DIR]    -> DIR/summary.md (default DIR: benchmarks/results/)

Reads <DIR>/<name>.json as written by common.write_results ({"machine": ..., "rows": [...]}); a section
whose file is missing is reported as not run. Every figure is a ratio measured in one run.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

OP_RESULTS = ("rtd_loss", "replace", "generator_head", "early_exit", "dropout", "dropout_add_layer_norm", "bias_gelu")
# columns that identify a row of an op benchmark (whichever a script has), then the figures worth quoting
OP_KEYS = ("op", "B", "T", "M", "V", "E", "H", "N", "batch", "seq_len", "active", "shape", "case", "dtype", "pass",
           "mode", "direction", "impl", "backend", "method")
OP_FIGURES = ("ms", "peak_mib", "peak_mb", "peak_bytes", "saved_bytes")


def load(out_dir: Path, name: str) -> Optional[Dict[str, object]]:
    """{"machine": {...}, "rows": [...]} of <out_dir>/<name>.json, or None when it is missing."""
    path = Path(out_dir) / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def fmt(value: object, digits: int = 3) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits}g}"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"
    return str(value)


def pct(value: object) -> str:
    return "" if value in (None, "") else f"{100 * float(value):.1f}%"


def table(rows: Sequence[Dict[str, object]], columns: Sequence[tuple]) -> List[str]:
    """A Markdown table; columns are (header, key or callable(row) -> str)."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [c(r) if callable(c) else fmt(r.get(c)) for _, c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def machine_line(machine: Dict[str, str]) -> str:
    return (f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {machine.get('torch_threads', '?')} "
            f"torch threads, GPU: {machine.get('gpu', 'none')}; torch {machine.get('torch', '?')}, triton "
            f"{machine.get('triton', '?')}, electra_fast {machine.get('electra_fast', '?')} at "
            f"{machine.get('git_commit', '?')}, {machine.get('date', '?')}")


def train_step_section(data: Dict[str, object]) -> List[str]:
    rows = data["rows"]
    lines = ["## Training step (tokens/s, ours vs the Hugging Face baseline, interleaved in one run)", "",
             "Baseline: transformers' ElectraForMaskedLM generator (logits at every position) + "
             "ElectraForPreTraining, tied embeddings, BCEWithLogitsLoss over attention_mask, AdamW; "
             "`hf-gumbel` samples by dense Gumbel-argmax, `hf-multinomial` by softmax + multinomial. "
             "Speed-up is against the faster of the two. FLOPs are analytic (official counting rules, "
             "backward = 2x forward); discriminator FLOPs include its RTD and exit heads.", ""]
    lines += table(rows, [
        ("preset", "preset"), ("batch x seq", lambda r: f"{r['batch']}x{r['seq_len']}"), ("config", "config"),
        ("step ms (p10-p90)", lambda r: f"{fmt(r['step_ms'])} ({fmt(r['p10_ms'])}-{fmt(r['p90_ms'])})"),
        ("tokens/s", lambda r: f"{float(r['tokens_per_s']):,.0f}"),
        ("GFLOP/s", lambda r: f"{float(r['flops_per_s']) / 1e9:.2f}"),
        ("speed-up vs HF", lambda r: f"{float(r['speedup_vs_hf_fastest']):.2f}x"),
        ("disc FLOPs saved", lambda r: pct(r.get("disc_flops_saved"))),
        ("wall saved vs ours", lambda r: pct(r.get("wall_saved_vs_ours"))),
    ])
    return lines + [""]


def exit_section(data: Dict[str, object]) -> List[str]:
    lines = ["## Early exit: the discriminator's forward + backward alone (interleaved in one run)", "",
             "Wall-clock saved against ours without early exit, next to the analytic discriminator FLOPs saved "
             "(embeddings, layers, RTD and exit heads); their ratio is how much of the saving the exit "
             "machinery keeps.", ""]
    lines += table(data["rows"], [
        ("preset", "preset"), ("batch x seq", lambda r: f"{r['batch']}x{r['seq_len']}"), ("config", "config"),
        ("fwd+bwd ms", "fwd_bwd_ms"), ("wall saved", lambda r: pct(r.get("wall_saved_vs_ours"))),
        ("FLOPs saved", lambda r: pct(r.get("disc_flops_saved"))),
        ("wall / FLOPs saving", lambda r: fmt(r.get("wall_over_flops_saving"))),
        ("active fractions", "active_fractions"),
    ])
    return lines + [""]


PROFILE_PHASES = ("forward", "backward", "optimizer")


def profile_tables(rows: Sequence[Dict[str, object]]) -> List[str]:
    """profile_step.py's rows as two Markdown tables: ms per step by category and phase, ours next to HF,
    and the ops with the most self time."""
    families = [f for f in ("ours", "hf") if any(r["family"] == f for r in rows)]
    cats = [r for r in rows if r["section"] == "category"]
    categories = list(dict.fromkeys(r["category"] for r in cats))
    cell = {(r["family"], r["phase"], r["category"]): float(r["ms_per_step"]) for r in cats}
    step = {f: sum(v for (fam, _, _), v in cell.items() if fam == f) for f in families}

    def ms(family, category, phases=PROFILE_PHASES):
        return sum(cell.get((family, p, category), 0.0) for p in phases)

    header = ["category"] + [f"{f} {p}" for f in families for p in ("fwd ms", "bwd ms", "opt ms", "ms", "share")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for category in categories + ["step (profiled)"]:
        cells = [category]
        for f in families:
            if category in categories:
                parts = [ms(f, category, (p,)) for p in PROFILE_PHASES] + [ms(f, category)]
            else:
                parts = [sum(ms(f, c, (p,)) for c in categories) for p in PROFILE_PHASES] + [step[f]]
            share = parts[-1] / step[f] if step[f] else 0.0
            cells += [f"{v:,.1f}" for v in parts] + [pct(share)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Ops with the most self time:", ""]
    lines += table([r for r in rows if r["section"] == "op"], [
        ("family", "family"), ("op", "op"), ("category", "category"),
        ("ms / step", lambda r: f"{float(r['ms_per_step']):,.1f}"), ("share", lambda r: pct(r["share_of_step"])),
        ("calls / step", lambda r: f"{float(r['calls_per_step']):,.0f}")])
    return lines


def profile_section(data: Dict[str, object]) -> List[str]:
    first = data["rows"][0]
    lines = [f"## Where a training step's time goes (torch.profiler, {first['preset']} {first['batch']}x"
             f"{first['seq_len']}, self CPU time per step, {first['steps']} profiled steps)", "",
             "Ours (no early exit) and HF (dense Gumbel) as bench_train_step.py runs them. Each op's self time goes "
             "to its phase and a category (benchmarks/profile_step.py: `categorise`): GEMMs count as GEMM "
             "wherever they run, attention is the rest of SDPA; overhead is time outside any op. The profiler "
             "adds a few microseconds per op: the step times to quote are the training-step table's.", ""]
    return lines + profile_tables(data["rows"]) + [""]


def scaling_section(data: Dict[str, object]) -> List[str]:
    rows = data["rows"]
    lines = [f"## Step time as the work grows ({rows[0]['preset']}, ours vs HF dense Gumbel, interleaved per cell, "
             "medians)", "",
             "Sequence length at a fixed batch, then batch at a fixed length (benchmarks/bench_scaling.py). "
             "Microseconds per token flat along a sweep is linear scaling; ours/HF below 1 is ours faster.", ""]
    lines += table(rows, [
        ("sweep", "sweep"), ("batch x seq", lambda r: f"{r['batch']}x{r['seq_len']}"),
        ("ours ms", "ours_ms"), ("HF ms", "hf_ms"), ("ours / HF", lambda r: f"{float(r['ours_over_hf']):.2f}"),
        ("ours us/token", "ours_us_per_token"), ("HF us/token", "hf_us_per_token"), ("repeats", "repeats")])
    return lines + [""]


def inference_section(data: Dict[str, object]) -> List[str]:
    """Seed means per (configuration, threshold) of the threshold sweep at inference."""
    groups: Dict[tuple, List[Dict[str, object]]] = {}
    for r in data["rows"]:
        groups.setdefault((r["config"], float(r["threshold"])), []).append(r)
    mean = lambda rows, key: sum(float(r[key]) for r in rows) / len(rows)  # noqa: E731
    lines = ["### Early exit at inference: fixed-set AUC against inference FLOPs (threshold policy, seed means)", "",
             "| config | threshold | seeds | AUC uniform | FLOPs (uniform set) | AUC unigram | FLOPs (unigram set) |",
             "|---|---|---|---|---|---|---|"]
    for (config, threshold), rows in groups.items():
        lines.append(f"| {config} | {threshold:g} | {len(rows)} | {mean(rows, 'auc_uniform'):.3f} | "
                     f"{pct(mean(rows, 'flops_fraction_uniform'))} | {mean(rows, 'auc_unigram'):.3f} | "
                     f"{pct(mean(rows, 'flops_fraction_unigram'))} |")
    return lines + [""]


def quality_section(out_dir: Path) -> List[str]:
    summary, verdicts, runs = (load(out_dir, n) for n in ("quality_summary", "quality_verdicts", "quality"))
    if summary is None:
        return ["## Quality at equal compute", "", "not run", ""]
    rows = summary["rows"]
    loads = [float(r["load_average"]) for r in (runs or {"rows": []})["rows"] if r.get("load_average") not in ("", None)]
    lines = ["## Quality at equal compute (fixed held-out yardstick, seeds, equal FLOPs)", "",
             "Every configuration trains on the baseline's FLOPs budget; all are scored on the same held-out tokens, "
             "corrupted once by a uniform (easy) and a unigram (hard) corrupter (ROC-AUC), and fine-tuned on the "
             "Rotten Tomatoes snippets (movie-level split). Mean +- seed std; `vs baseline` is the paired "
             "difference (same seeds), marked * when it is larger than the seed spread. `FLOPs to baseline` is the "
             "fraction of the baseline's FLOPs at which the configuration's seed-mean first reaches the baseline's "
             "final seed-mean AUC (n/a on a set where the baseline does not beat the untrained control by 5 seed "
             "stds).", ""]
    if loads:
        lines += [f"1-minute load average at the end of each run: {min(loads):.2f}-{max(loads):.2f} (a run keeps both cores "
                  "busy, so about 2 means nothing else was running).", ""]
    gates = [r["verdict"] for r in (verdicts or {"rows": []})["rows"]
             if r["verdict"].startswith(("inconclusive", "smoke test"))]
    if gates:
        lines += ["**No ranking:** " + "; ".join(gates) + ". The table is the data, not a verdict.", ""]

    def ms(key):
        def cell(r):
            if r.get(key) in ("", None) or math.isnan(float(r[key])):
                return ""
            return f"{float(r[key]):.3f} +- {float(r.get(key + '_std') or 0):.3f}"
        return cell

    def diff(key):
        def cell(r):
            if r.get(key + "_vs_baseline") in ("", None):
                return ""
            mark = "*" if str(r.get(key + "_counts")) == "True" else ""
            return f"{float(r[key + '_vs_baseline']):+.3f}{mark}"
        return cell

    def frac(key):
        def cell(r):
            if key not in r or r["config"] == "untrained":
                return ""
            if r[key] in ("", None):
                return "n/a"  # the baseline does not beat the untrained control on this set
            return "not reached" if math.isnan(float(r[key])) else f"{float(r[key]):.2f}"
        return cell

    lines += table(rows, [
        ("config", "config"), ("seeds", "seeds"), ("steps", lambda r: f"{float(r['steps']):.0f}"),
        ("AUC uniform", ms("auc_uniform")), ("vs baseline", diff("auc_uniform")),
        ("AUC unigram", ms("auc_unigram")), ("vs baseline", diff("auc_unigram")),
        ("recall@5%FPR unigram", ms("recall5_unigram")),
        ("fine-tuned acc", ms("finetune_accuracy")), ("vs baseline", diff("finetune_accuracy")),
        ("probe acc", ms("probe_accuracy")), ("MLM acc", ms("mlm_accuracy")),
        ("FLOPs to baseline (uniform / unigram)",
         lambda r: f"{frac('flops_to_baseline_uniform')(r)} / {frac('flops_to_baseline_unigram')(r)}"),
        ("wall-clock to baseline (uniform / unigram)",
         lambda r: f"{frac('wall_to_baseline_uniform')(r)} / {frac('wall_to_baseline_unigram')(r)}"),
    ])
    majority = next((r.get("majority_accuracy") for r in (runs or {"rows": []})["rows"]), None)
    if majority not in (None, ""):
        lines += ["", f"Majority class of the review test split: {pct(majority)}."]
    if verdicts is not None:
        lines += [""] + [f"- {r['verdict']}" for r in verdicts["rows"] if r["verdict"] not in gates]
    lines += [""]
    inference = load(out_dir, "quality_inference")
    if inference and inference["rows"]:
        lines += inference_section(inference)
    return lines


def op_section(name: str, data: Dict[str, object]) -> List[str]:
    rows = data["rows"]
    keys = [k for k in OP_KEYS if any(k in r for r in rows)]
    figures = [k for k in OP_FIGURES if any(k in r for r in rows)]
    ratios = sorted({k for r in rows for k in r if k.startswith("speedup") or k.startswith("vs_")
                     or k.endswith("_ratio") or k.startswith("x_")})
    lines = [f"### {name}", ""]
    lines += table(rows, [(k, k) for k in keys + figures + ratios])
    return lines + [""]


def roofline_section(data: Dict[str, object]) -> List[str]:
    rows = data["rows"]
    lines = ["## GPU: H100 roofline PROJECTION (estimated from shapes and kernel design, not measured)", "",
             "Bytes moved to/from HBM and FLOPs per kernel, 3.35 TB/s, 990 TFLOP/s bf16 tensor, 67 TFLOP/s "
             "fp32 scalar, 3 us per launch, 10 us per host sync (assumptions in benchmarks/roofline.py).", ""]
    lines += table(rows, [("op", "op"), ("case", "case"), ("impl", "impl"), ("kernels", "kernels"),
                          ("syncs", "syncs"), ("HBM MB", "hbm_mb"), ("GFLOP", "gflop"),
                          ("projected us", "projected_us"),
                          ("projected speed-up vs eager", lambda r: f"{float(r['projected_speedup_vs_eager']):.2f}x")])
    return lines + [""]


def status_section(data: Optional[Dict[str, object]]) -> List[str]:
    if data is None:
        return []
    lines = ["## Sections run", ""]
    lines += table(data["rows"], [("section", "section"), ("status", "status"), ("seconds", "seconds"),
                                  ("note", lambda r: str(r.get("note", ""))[:160])])
    return lines + [""]


def headline(out_dir: Path) -> List[str]:
    """The few figures the README quotes, as one table (empty when the training step did not run)."""
    ts = load(out_dir, "train_step")
    lines: List[str] = []
    if ts is not None:
        lines += ["| preset | configuration | tokens/s | vs HF baseline | discriminator FLOPs saved | wall-clock saved |",
                  "|---|---|---|---|---|---|"]
        for r in ts["rows"]:
            if r["family"] != "ours":
                continue
            lines.append(f"| {r['preset']} | {r['config']} | {float(r['tokens_per_s']):,.0f} | "
                         f"{float(r['speedup_vs_hf_fastest']):.2f}x | {pct(r.get('disc_flops_saved'))} | "
                         f"{pct(r.get('wall_saved_vs_ours'))} |")
    return lines


def build(out_dir: Path) -> str:
    """The whole summary as Markdown."""
    out_dir = Path(out_dir)
    machine = None
    for name in ("run_status", "train_step", "quality_summary", "roofline") + OP_RESULTS:
        data = load(out_dir, name)
        if data is not None:
            machine = data["machine"]
            break
    lines = ["# electra_fast benchmark summary", ""]
    if machine is not None:
        lines += [f"Measured on: {machine_line(machine)}.", ""]
    head = headline(out_dir)
    if head:
        lines += ["## Headline", ""] + head + [""]
    ts = load(out_dir, "train_step")
    lines += train_step_section(ts) if ts else ["## Training step", "", "not run", ""]
    exits = load(out_dir, "exit_discriminator")
    if exits and exits["rows"]:
        lines += exit_section(exits)
    profile = load(out_dir, "profile_step")
    if profile and profile["rows"]:
        lines += profile_section(profile)
    scaling = load(out_dir, "scaling")
    if scaling and scaling["rows"]:
        lines += scaling_section(scaling)
    lines += quality_section(out_dir)
    lines += ["## Ops (CPU; ratios against baselines timed in the same run)", ""]
    for name in OP_RESULTS:
        data = load(out_dir, name)
        lines += op_section(name, data) if data else [f"### {name}", "", "not run", ""]
    lines += gpu_section(Path(out_dir) / "gpu")
    rl = load(out_dir, "roofline")
    if rl:
        lines += roofline_section(rl)
    lines += status_section(load(out_dir, "run_status"))
    images = sorted(p.name for p in out_dir.glob("*.png"))
    if images:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in images] + [""]
    return "\n".join(lines)


def gpu_section(gpu_dir: Path) -> List[str]:
    """The op tables of the gpu section (its scripts write to <out>/gpu/, the quick run's early exit as
    early_exit_quick), or a line saying there are none."""
    tables: List[str] = []
    for name in OP_RESULTS:
        data = load(gpu_dir, name) or load(gpu_dir, f"{name}_quick")
        if data and data["rows"]:
            tables += op_section(name, data)
    if not tables:
        return ["## GPU", "", "No GPU results in this run (no CUDA device, or the gpu section was not run): the "
                "roofline projection below stands in until a GPU run exists.", ""]
    return ["## GPU (ops on CUDA tensors; ratios against baselines timed in the same run)", ""] + tables


def write(out_dir: Path) -> Path:
    path = Path(out_dir) / "summary.md"
    path.write_text(build(out_dir))
    return path


def main(argv: Optional[Sequence[str]] = None) -> Path:
    from common import RESULTS_DIR

    parser = argparse.ArgumentParser(description="Markdown summary of the benchmark results")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    path = write(Path(args.out))
    print(path)
    return path


if __name__ == "__main__":
    main()
