"""`electra-fast selftest` (or `python -m electra_fast.selftest`): does every op give the reference's
values, gradients and ids on every backend of this machine?

For each device (cpu, and cuda when a GPU is visible), each backend usable there and each op, it runs the
op's cases (electra_fast/_selftest_cases.py: odd and edge shapes, V = 30522, zero-size inputs, float16
and bfloat16) and compares every output with the oracle, the reference backend on CPU. One line per op
x device x backend:

    PASS  generator_head         cuda  triton       8 cases  max err 3.1e-07     0.84 s
    FAIL  sample_replace         cpu   cpp          8 cases  max err 0.0e+00     0.52 s  fp32 V=30522 ...: ids ...

(max err: the largest |got - oracle| over the float outputs). The exit status is 1 when any line fails.
The reference backend on CPU is the oracle itself and gets no line; on CUDA it is checked like the others.

Triton runs on CPU tensors only in its interpreter: without a GPU this sets TRITON_INTERPRET=1 (before
any Triton kernel is imported), and the interpreter runs only the cases marked `interpreted`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from . import _selftest_cases as cases_module
from . import backend
from ._selftest_cases import Case, Out


def mismatch(got: Dict[str, Out], want: Dict[str, Out]) -> Tuple[Optional[str], float]:
    """(what differs, or None; the largest absolute error over the float outputs) of one case."""
    worst = 0.0
    if sorted(got) != sorted(want):
        return f"outputs {sorted(got)} != the oracle's {sorted(want)}", worst
    for name, expected in want.items():
        actual = got[name]
        g, w = actual.value.detach().cpu(), expected.value.detach().cpu()
        if g.shape != w.shape or g.dtype != w.dtype:
            return f"{name}: {g.dtype}{list(g.shape)} != the oracle's {w.dtype}{list(w.shape)}", worst
        if expected.rtol == 0 and expected.atol == 0:
            differ = g != w
            if actual.valid is not None:
                differ &= ~actual.valid.cpu()
            if bool(differ.any()):
                where = differ.nonzero()[0].tolist()
                return (f"{name}: {int(differ.sum())} of {differ.numel()} differ, first at {where}: "
                        f"{g[tuple(where)].item()} != {w[tuple(where)].item()}"), worst
            continue
        g64, w64 = g.double(), w.double()
        err = (g64 - w64).abs()
        same_nonfinite = (g64 == w64) | (g64.isnan() & w64.isnan())
        err = torch.where(same_nonfinite, torch.zeros_like(err), err)
        if err.numel():
            worst = max(worst, float(err.max()))
        bad = err > expected.atol + expected.rtol * w64.abs()
        if bool(bad.any()):
            where = bad.nonzero()[0].tolist()
            return (f"{name}: {int(bad.sum())} of {bad.numel()} outside rtol {expected.rtol:g} atol "
                    f"{expected.atol:g}, first at {where}: {g64[tuple(where)].item():.9g} != "
                    f"{w64[tuple(where)].item():.9g}"), worst
    return None, worst


class Line:
    """The result of one op x device x backend: cases run, worst error, time, first failure."""

    def __init__(self, op: str, device: str, name: str):
        self.op, self.device, self.name = op, device, name
        self.cases, self.worst, self.seconds = 0, 0.0, 0.0
        self.failure: Optional[str] = None

    def __str__(self) -> str:
        status = "PASS" if self.failure is None else "FAIL"
        text = (f"{status}  {self.op:<22} {self.device:<5} {self.name:<10} {self.cases:>3} cases  "
                f"max err {self.worst:.1e}  {self.seconds:>7.2f} s")
        return text if self.failure is None else f"{text}  {self.failure}"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Oracle:
    """The reference backend's outputs on CPU, computed once per case."""

    def __init__(self):
        self._outputs: Dict[int, Dict[str, Out]] = {}

    def __call__(self, case: Case) -> Dict[str, Out]:
        if id(case) not in self._outputs:
            with backend.use("reference"):
                self._outputs[id(case)] = case.run(torch.device("cpu"))
        return self._outputs[id(case)]


def check(op_cases: Sequence[Case], device: str, name: str, oracle: Oracle) -> Line:
    """Run one op's cases on backend `name` with tensors on `device` against the oracle."""
    line = Line(op_cases[0].op, device, name)
    interpreter = name == "triton" and device == "cpu"
    for case in op_cases:
        if interpreter and not case.interpreted:
            continue
        try:
            want = oracle(case)
            with backend.use(name):
                _sync(device)
                start = time.perf_counter()
                got = case.run(torch.device(device))
                _sync(device)
                line.seconds += time.perf_counter() - start
            failure, worst = mismatch(got, want)
        except Exception as exc:  # a crash is a failed line, and the other lines still run
            failure, worst = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", 0.0
        line.cases += 1
        line.worst = max(line.worst, worst)
        if failure is not None and line.failure is None:
            line.failure = f"{case.label}: {failure}"
    return line


def targets(backends: Optional[Iterable[str]] = None) -> List[Tuple[str, str]]:
    """The (device, backend) pairs to check here: every backend usable on each device, less the oracle."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    pairs = [(device, name) for device in devices for name in backend.available(device)
             if not (device == "cpu" and name == "reference")]
    return [p for p in pairs if backends is None or p[1] in set(backends)]


def run(ops: Optional[Iterable[str]] = None, backends: Optional[Iterable[str]] = None, out=None) -> int:
    """Check the chosen ops (default: all) on the chosen backends (default: all usable), printing to `out`
    (default: stdout); 0 when all pass."""
    out = out or sys.stdout
    by_op: Dict[str, List[Case]] = {}
    for case in cases_module.all_cases():
        by_op.setdefault(case.op, []).append(case)
    unknown = set(ops or ()) - set(by_op)
    if unknown:
        raise ValueError(f"unknown ops {sorted(unknown)}; expected some of {list(by_op)}")
    chosen = [op for op in by_op if ops is None or op in set(ops)]
    pairs = targets(backends)
    if not pairs:
        raise ValueError(f"no backend to check among {list(backends or [])}; usable here: {backend.available()}")
    start = time.perf_counter()
    oracle = Oracle()
    lines = []
    for op in chosen:
        for device, name in pairs:
            lines.append(check(by_op[op], device, name, oracle))
            print(lines[-1], file=out, flush=True)
    failed = sum(line.failure is not None for line in lines)
    print(f"selftest: {len(lines) - failed} of {len(lines)} op x backend lines passed "
          f"({', '.join(f'{d}/{n}' for d, n in pairs)}) in {time.perf_counter() - start:.1f} s", file=out)
    return 1 if failed else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", help="comma-separated ops to check (default: all)")
    parser.add_argument("--backends", help="comma-separated backends to check (default: every one usable here)")


def main(args: argparse.Namespace) -> int:
    if not torch.cuda.is_available():
        # Triton's CPU interpreter; read when the kernels are decorated, i.e. first imported
        os.environ.setdefault("TRITON_INTERPRET", "1")
    split = lambda value: None if value is None else [v for v in value.split(",") if v]  # noqa: E731
    return run(split(args.ops), split(args.backends))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m electra_fast.selftest", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
