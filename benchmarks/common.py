"""Shared benchmark utilities: timing, machine facts, results files, CLI flags, torch.compile baseline.

A benchmark script looks like:

    from common import Result, compiled, parse_args, print_table, time_fn, write_results
    args = parse_args("RTD loss", backends=["cpp", "triton"])
    ref_c = compiled(reference_fn)
    t_eager = time_fn(lambda: reference_fn(x), quick=args.quick)
    t_ours = time_fn(lambda: ours(x), quick=args.quick)
    rows = [{"op": "rtd_loss", "impl": "cpp", **t_ours.as_dict(), "speedup_vs_eager": t_eager.median / t_ours.median}]
    write_results("rtd_loss", rows, args.out)

Run the scripts as `python benchmarks/bench_<op>.py`: they put their own directory on sys.path, so
`import common` works. They always measure the installed electra_fast (never a source tree on sys.path),
and refuse to run, with one line, when the kernels they are asked to time are not built there.
Every figure a script reports should be a ratio against a baseline timed in the same run.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent

if importlib.util.find_spec("electra_fast") is None:
    sys.exit("benchmarks: electra_fast is not installed in this Python; the suite measures the installed, built "
             "package: pip install --no-build-isolation '.[bench]' from the checkout")


def require_backends(names: Sequence[str], device: str) -> None:
    """Exit with one line when a backend the run is asked to time is not available for `device` here."""
    from electra_fast import _extension, backend

    missing = [n for n in names if n not in backend.available(device)]
    if missing:
        import electra_fast

        where = Path(electra_fast.__file__).resolve().parent
        sys.exit(f"benchmarks: backend(s) {', '.join(missing)} not available for {device} tensors in the installed "
                 f"electra_fast at {where} (available: {', '.join(backend.available(device))}; C++ extension "
                 f"{'loaded' if _extension.load() else 'not built'}); rebuild it with pip install "
                 "--no-build-isolation . or pass --backends")


# ---------------------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Seconds per call over `repeats` timed calls: median and the 10th/90th percentiles (the spread)."""

    median: float
    p10: float
    p90: float
    repeats: int

    def as_dict(self, prefix: str = "") -> Dict[str, float]:
        """Milliseconds, for a results row: {prefix}ms, {prefix}p10_ms, {prefix}p90_ms, {prefix}repeats."""
        return {f"{prefix}ms": self.median * 1e3, f"{prefix}p10_ms": self.p10 * 1e3,
                f"{prefix}p90_ms": self.p90 * 1e3, f"{prefix}repeats": self.repeats}


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def time_fn(fn: Callable[..., object], *, setup: Optional[Callable[[], object]] = None, warmup: int = 3,
            repeats: int = 30, min_seconds: float = 0.2, quick: bool = False,
            cuda: Optional[bool] = None) -> Timing:
    """Time `fn()`, or `fn(setup())` when `setup` is given (setup runs untimed before every call: e.g. a
    forward pass whose backward is timed). `warmup` untimed calls (compilation, caches), then at least
    `repeats` timed calls and at least `min_seconds` of timed time. Each call is timed alone, with
    torch.cuda.synchronize before and after on GPU (cuda=None: whenever CUDA is available), so the
    spread is real. `quick` cuts the work ~10x."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if quick:
        warmup, repeats, min_seconds = 1, max(repeats // 10, 3), min_seconds / 10

    def call() -> float:
        arg = (setup(),) if setup is not None else ()
        _sync(cuda)
        start = time.perf_counter()
        fn(*arg)
        _sync(cuda)
        return time.perf_counter() - start

    for _ in range(warmup):
        call()
    times: List[float] = []
    while len(times) < repeats or sum(times) < min_seconds:
        times.append(call())
    q = statistics.quantiles(times, n=10, method="inclusive")
    return Timing(median=statistics.median(times), p10=q[0], p90=q[-1], repeats=len(times))


# ----------------------------------------------------------------------------------------- machine info
def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return "not installed"


def machine_info() -> Dict[str, str]:
    """Where and with what a result was measured, as a flat dict of strings (goes into every row)."""
    import electra_fast
    from electra_fast.env import cpu_model

    ef_version = electra_fast.__version__
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "triton": _triton_version(),
        "python": platform.python_version(),
        "electra_fast": ef_version,
        "git_commit": _git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------------------- results
def write_results(name: str, rows: Sequence[Dict[str, object]], out_dir: Optional[os.PathLike] = None,
                  info: Optional[Dict[str, str]] = None) -> List[Path]:
    """Write rows to <out_dir>/<name>.csv and .json (default out_dir: benchmarks/results/).

    Every row gets the machine_info() columns. The CSV header is the union of the rows' keys in
    first-seen order. The JSON is {"machine": info, "rows": [...]}. Returns the two paths."""
    info = machine_info() if info is None else info
    out = Path(out_dir) if out_dir is not None else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    full = [{**row, **info} for row in rows]
    columns: List[str] = []
    for row in full:
        columns += [k for k in row if k not in columns]
    csv_path, json_path = out / f"{name}.csv", out / f"{name}.json"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(full)
    with open(json_path, "w") as f:
        json.dump({"machine": info, "rows": full}, f, indent=1, default=str)
    return [csv_path, json_path]


def print_table(rows: Sequence[Dict[str, object]], columns: Iterable[str]) -> None:
    """A plain fixed-width table of the chosen columns on stdout (floats with 4 significant digits)."""
    columns = list(columns)

    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


# -------------------------------------------------------------------------------------------------- CLI
def make_parser(description: str, backends: Sequence[str]) -> argparse.ArgumentParser:
    """The common flags (--quick, --out, --backends); add your own before parse_args()."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a smoke run)")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="directory for the CSV/JSON results")
    parser.add_argument("--backends", default=",".join(backends),
                        help="comma-separated electra_fast backends to time (default: %(default)s)")
    return parser


def parse_args(description: str, backends: Sequence[str], argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """make_parser(...).parse_args(argv), with args.backends as a list of names."""
    args = make_parser(description, backends).parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    require_backends(args.backends, "cuda" if torch.cuda.is_available() else "cpu")
    return args


# ---------------------------------------------------------------------------------------- torch.compile
class Compiled:
    """torch.compile(fn), falling back to eager fn when inductor cannot compile here.

    Compilation happens on the first call; if it raises, the failure is kept in `note`, `ok` turns
    False, and this and later calls run fn eagerly (report `note` next to the figure: it is then not a
    compiled baseline)."""

    def __init__(self, fn: Callable, **compile_kwargs) -> None:
        self.fn = fn
        self.ok = True
        self.note = ""
        self._compiled = torch.compile(fn, **compile_kwargs)

    def __call__(self, *args, **kwargs):
        if self.ok:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as exc:  # inductor needs a working C++/Triton toolchain; say why it is missing
                self.ok = False
                self.note = f"torch.compile failed, eager fallback: {type(exc).__name__}: {str(exc)[:200]}"
                print(f"[benchmarks] {self.note}", file=sys.stderr)
        return self.fn(*args, **kwargs)


def add_speedups(rows: Sequence[Dict[str, object]], baselines: Sequence[str], within: str = "mode") -> None:
    """rows[i]["speedup_vs_<b>"] = the ms of baseline impl b over rows[i]["ms"], among rows of the same `within`."""
    ms = {(r[within], r["impl"]): r["ms"] for r in rows}
    for r in rows:
        for b in baselines:
            r[f"speedup_vs_{b}"] = ms[(r[within], b)] / r["ms"]


def saved_bytes(fn: Callable, inputs: Sequence[torch.Tensor]) -> int:
    """Bytes of the tensors autograd keeps for fn(*inputs)'s backward, other than the inputs themselves."""
    own = {t.data_ptr() for t in inputs}
    saved = []

    def pack(t):
        if t.data_ptr() not in own:
            saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return sum(saved)


def compiled(fn: Callable, **compile_kwargs) -> Compiled:
    """torch.compile(fn, **compile_kwargs) with an eager fallback and a note (see Compiled)."""
    return Compiled(fn, **compile_kwargs)
