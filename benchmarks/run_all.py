"""The whole benchmark suite: one command, one report.

    python benchmarks/run_all.py [--quick] [--out DIR] [--sections ops,train_step,...]
    (the same as `electra-fast bench [--quick] [--out DIR]`)

Sections, in order (each failure is recorded and the rest still run):
    ops         every op benchmark script (bench_rtd_loss, bench_replace, bench_generator_head, bench_early_exit,
                bench_dropout, bench_dropout_add_layer_norm, bench_bias_gelu), each in its own process: ours vs
                eager vs torch.compile vs the floor
    train_step  ELECTRA training step, ours vs the Hugging Face baseline (bench_train_step.py)
    profile     where one step's time goes, ours and HF, by phase and op category (profile_step.py)
    scaling     step time against sequence length and batch, ours vs HF (bench_scaling.py)
    flops       analytic FLOPs per step (generator, discriminator, heads) per preset, and the fraction
                early exit saves at each threshold from the per-layer active fractions measured above
    quality     equal-FLOPs pre-training runs, seeds, scored on a fixed held-out yardstick + fine-tuning (bench_quality.py)
    roofline    the H100 roofline projection of every op (roofline.py), labelled as a projection
    gpu         the op benchmarks again on CUDA (Triton and CUDA backends side by side) when a GPU is
                present; recorded as skipped otherwise
then the PNG plots (plots.py) and the Markdown summary (report.py). Results: <DIR>/<name>.csv|json,
<DIR>/*.png, <DIR>/summary.md, <DIR>/run_status.csv|json. `--quick` is the < 5 minute CPU demo.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SECTIONS = ("ops", "train_step", "profile", "scaling", "flops", "quality", "roofline", "gpu")
OP_SCRIPTS = ("bench_rtd_loss.py", "bench_replace.py", "bench_generator_head.py", "bench_early_exit.py",
              "bench_dropout.py", "bench_dropout_add_layer_norm.py", "bench_bias_gelu.py")
OP_TIMEOUT_S = {"quick": 150, "full": 1200}


def run_script(script: Path, args: Sequence[str], timeout: float) -> Dict[str, object]:
    """Run one benchmark script in its own process; its status row (stdout/stderr tail on failure)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                              timeout=timeout)
        ok = proc.returncode == 0
        note = "" if ok else f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-600:]}"
        if ok:
            print(proc.stdout[-3000:])
    except subprocess.TimeoutExpired:
        ok, note = False, f"timed out after {timeout:.0f} s"
    return {"section": "ops", "name": script.stem, "status": "ok" if ok else "failed", "note": note,
            "seconds": time.perf_counter() - start}


def ops_section(out: Path, quick: bool, extra: Sequence[str] = (), section: str = "ops") -> List[Dict[str, object]]:
    rows = []
    for name in OP_SCRIPTS:
        script = HERE / name
        args = ["--out", str(out), *(["--quick"] if quick else []), *extra]
        row = run_script(script, args, OP_TIMEOUT_S["quick" if quick else "full"])
        row["section"] = section
        rows.append(row)
        print(f"[bench] {section}/{row['name']}: {row['status']} in {row['seconds']:.0f} s {row['note'][:300]}")
    return rows


def flops_rows(train_rows: Sequence[Dict[str, object]], presets: Sequence[str]) -> List[Dict[str, object]]:
    """Analytic FLOPs per step for each preset at its own batch and length, and for each measured early-exit
    configuration the discriminator FLOPs saved at its measured active fractions."""
    import bench_train_step as ts
    from electra_fast.flops import inference_flops
    from electra_fast.models import ElectraConfig

    rows = []
    for preset in dict.fromkeys(list(presets) + ["base"]):
        cfg = ElectraConfig.preset(preset)
        f = ts.step_flops(cfg, cfg.batch_size, cfg.seq_len)
        rows.append({"section": "flops", "preset": preset, "config": "preset defaults", "batch": cfg.batch_size,
                     "seq_len": cfg.seq_len, "generator_flops": f["generator"], "discriminator_flops": f["discriminator"],
                     "head_flops": f["heads"], "total_flops": f["total"],
                     "inference_flops_per_seq": inference_flops(cfg, cfg.seq_len)})
    for r in train_rows:
        if r.get("family") != "ours":
            continue
        rows.append({"section": "flops", "preset": r["preset"], "config": r["config"], "batch": r["batch"],
                     "seq_len": r["seq_len"], "generator_flops": r["gen_flops"], "discriminator_flops": r["disc_flops"],
                     "head_flops": r["head_flops"], "total_flops": r["model_flops"], "early_exit": r["early_exit"],
                     "active_fractions": r.get("active_fractions", ""),
                     "disc_flops_saved": r.get("disc_flops_saved", "")})
    return rows


def gpu_section(out: Path, quick: bool) -> List[Dict[str, object]]:
    if not torch.cuda.is_available():
        return [{"section": "gpu", "name": "all", "status": "skipped",
                 "note": "no CUDA device here; see roofline (a projection, not a measurement)", "seconds": 0.0}]
    gpu_out = out / "gpu"
    return ops_section(gpu_out, quick, ["--backends", "cuda,triton"], section="gpu")


def timed(name: str, fn: Callable[[], Optional[str]]) -> Dict[str, object]:
    """Run one in-process section; its status row (the traceback's tail when it fails)."""
    start = time.perf_counter()
    try:
        note = fn() or ""
        status = "ok"
    except Exception as exc:  # one broken section must not cost the others
        status, note = "failed", f"{type(exc).__name__}: {exc} | {traceback.format_exc()[-500:]}"
    row = {"section": name, "name": name, "status": status, "note": note, "seconds": time.perf_counter() - start}
    print(f"[bench] {name}: {status} in {row['seconds']:.0f} s {note[:300]}")
    return row


def run(out: Path, quick: bool = False, sections: Sequence[str] = SECTIONS,
        presets: Sequence[str] = ("tiny", "small")) -> List[Dict[str, object]]:
    """Run the chosen sections into `out`, then the plots and the summary; returns the status rows."""
    from common import require_backends, write_results

    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; expected some of {list(SECTIONS)}")
    if set(sections) & {"ops", "train_step", "profile", "scaling", "quality"}:
        require_backends(["cpp"], "cpu")  # what "ours" means on this machine: the built C++ kernels
    out.mkdir(parents=True, exist_ok=True)
    status: List[Dict[str, object]] = []
    train_rows: List[Dict[str, object]] = []

    def train_step():
        import bench_train_step as ts

        rows = ts.run(presets, quick)
        train_rows.extend(r for r in rows if r["section"] == "train_step")
        write_results("train_step", train_rows, out)
        write_results("exit_discriminator", [r for r in rows if r["section"] == "discriminator"], out)

    def profile():
        import profile_step

        write_results("profile_step", profile_step.profile_step(**(profile_step.QUICK if quick else {})), out)

    def scaling():
        import bench_scaling

        write_results("scaling", bench_scaling.scaling(**bench_scaling.PLANS["quick" if quick else "full"]), out)

    def flops():
        write_results("flops", flops_rows(train_rows, presets), out)

    def quality():
        import bench_quality

        for name, rows in bench_quality.run(quick).items():
            write_results(name, rows, out)

    def roofline():
        import roofline as rl

        write_results("roofline", rl.projection_rows(quick), out)
        return rl.LABEL

    for section in SECTIONS:
        if section not in sections:
            continue
        if section == "ops":
            status += ops_section(out, quick)
        elif section == "gpu":
            status += gpu_section(out, quick)
        else:
            status.append(timed(section, {"train_step": train_step, "profile": profile, "scaling": scaling,
                                          "flops": flops, "quality": quality, "roofline": roofline}[section]))
        write_results("run_status", status, out)

    def plots_and_report():
        import plots
        import report

        written = plots.write(out)
        return f"{len(written)} plots, {report.write(out)}"

    status.append(timed("report", plots_and_report))
    write_results("run_status", status, out)
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    from common import RESULTS_DIR

    parser = argparse.ArgumentParser(description="electra_fast benchmark suite (ops, training step, step profile, "
                                                 "scaling, FLOPs, quality, roofline, GPU)")
    parser.add_argument("--quick", action="store_true", help="the < 5 minute demo: small shapes, few repeats")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="results directory (default: %(default)s)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of %(default)s")
    parser.add_argument("--presets", default="tiny,small", help="training-step presets (default: %(default)s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    status = run(Path(args.out), args.quick, [s for s in args.sections.split(",") if s],
                 [p for p in args.presets.split(",") if p])
    failed = [r["name"] for r in status if r["status"] == "failed"]
    print(f"[bench] done in {time.perf_counter() - start:.0f} s; summary: {Path(args.out) / 'summary.md'}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
