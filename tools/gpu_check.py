"""Validate a GPU machine in one command (`make gpu-check`), with everything in one report file.

Stages, each in its own process; every stage runs even when an earlier one failed:
    env        python -m electra_fast.env: versions, the GPU, the backends
    selftest   electra-fast selftest: every op on every backend against the reference on CPU
    gpu tests  pytest -m gpu, except the device-assert cases
    asserts    the device-assert cases (tests/ops/test_device_asserts.py, each case in its own process)
    bench      electra-fast bench --quick --sections gpu: the op benchmarks on CUDA (cuda and triton)
Each stage has a budget, its time on one H200 as measured by the first run there, rounded up (the budgets add
up to 570 s, under the 10 minutes the whole check is meant to take; the README's "GPU status" has the
measurements), and is stopped at three times its budget. The GPU tests print each failure as it happens
(--failures-at-once), so that a later crash of the test process cannot lose it. All stages share one fresh
Triton and inductor cache, so a kernel is compiled once. The report holds each stage's output, then one line
per stage (status, seconds, budget) and the total. Exit status 1 when a stage failed or was stopped, 2 when no GPU is visible
(nothing runs then).

    python tools/gpu_check.py [--report gpu-check-report.txt] [--bench-out gpu-check-bench]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, TextIO

ROOT = Path(__file__).resolve().parent.parent
ASSERTS = "tests/ops/test_device_asserts.py"
TARGET_S = 600  # the whole check on one H100-class GPU


class Stage(NamedTuple):
    name: str
    command: List[str]
    budget_s: int


def stages(bench_out: str) -> List[Stage]:
    py = sys.executable
    return [
        Stage("env", [py, "-m", "electra_fast.env"], 10),
        Stage("selftest", [py, "-m", "electra_fast.selftest"], 60),
        Stage("gpu tests", [py, "-m", "pytest", "-q", "-rfEs", "--failures-at-once", "-m", "gpu", "tests",
                            "--ignore", ASSERTS], 180),
        Stage("asserts", [py, "-m", "pytest", "-q", "-rfEs", "-m", "gpu", ASSERTS], 170),
        Stage("bench", [py, "-m", "electra_fast.cli", "bench", "--quick", "--sections", "gpu", "--out", bench_out],
              150),
    ]


def run_stage(stage: Stage, env: Dict[str, str], report: TextIO) -> tuple:
    """(status, seconds): the stage's output goes to the report and to stdout."""
    limit = 3 * stage.budget_s
    header = f"\n=== {stage.name}: {' '.join(stage.command)} (budget {stage.budget_s} s, stopped at {limit} s)\n"
    for stream in (report, sys.stdout):
        stream.write(header)
        stream.flush()
    start = time.perf_counter()
    proc = subprocess.Popen(stage.command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=limit)
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        status = f"FAILED (stopped at {limit} s)"
    for stream in (report, sys.stdout):
        stream.write(out)
        stream.flush()
    return status, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default="gpu-check-report.txt", help="the report file (%(default)s)")
    parser.add_argument("--bench-out", default="gpu-check-bench", help="the GPU benchmark results (%(default)s)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device is visible here; it needs a GPU and a CUDA build of torch", file=sys.stderr)
        return 2
    cache = tempfile.mkdtemp(prefix="electra_fast_gpu_check_")
    # no TRITON_INTERPRET: the Triton backend runs compiled, on the GPU
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=os.path.join(cache, "triton"), TORCHINDUCTOR_CACHE_DIR=os.path.join(cache, "inductor"))
    results = []
    start = time.perf_counter()
    with open(args.report, "w") as report:
        report.write(f"gpu-check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        for stage in stages(str(Path(args.bench_out).resolve())):
            results.append((stage, *run_stage(stage, env, report)))
        total = time.perf_counter() - start
        failed = [stage.name for stage, status, _ in results if status != "ok"]
        summary = ["", "=== summary"]
        summary += [f"{stage.name:<10} {status:<28} {seconds:6.0f} s  (budget {stage.budget_s} s)"
                    for stage, status, seconds in results]
        summary.append(f"gpu-check: {'FAILED: ' + ', '.join(failed) if failed else 'every stage passed'}; "
                       f"{total:.0f} s in all (target {TARGET_S} s); report: {Path(args.report).resolve()}")
        for stream in (report, sys.stdout):
            stream.write("\n".join(summary) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
