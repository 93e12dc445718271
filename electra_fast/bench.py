"""`electra-fast bench [--quick] [--out DIR]`: the benchmark suite (benchmarks/run_all.py) from the command line.

The suite lives in the repository's benchmarks/ directory, not in the installed package (it needs the
Hugging Face baseline, matplotlib and a corpus of its own). It is found, first match wins, at
`--benchmarks-dir` (only there when given), at $ELECTRA_FAST_BENCHMARKS, next to the package (a source checkout or an editable
install), or under the current directory.

For the CLI: `add_arguments(parser)` adds the options to a sub-parser, `run(args) -> int` runs it;
`main(argv) -> int` is the same as a standalone entry.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

ENV_VAR = "ELECTRA_FAST_BENCHMARKS"


def candidates(explicit: Optional[str] = None) -> List[Path]:
    """Where the benchmarks directory may be, in the order they are tried (only `explicit` when given)."""
    if explicit:
        return [Path(explicit)]
    found = []
    if os.environ.get(ENV_VAR):
        found.append(Path(os.environ[ENV_VAR]))
    found += [Path(__file__).resolve().parent.parent / "benchmarks", Path.cwd() / "benchmarks"]
    return found


def find_benchmarks(explicit: Optional[str] = None) -> Path:
    """The first candidate directory holding run_all.py; FileNotFoundError naming all of them otherwise."""
    tried = candidates(explicit)
    for path in tried:
        if (path / "run_all.py").is_file():
            return path.resolve()
    raise FileNotFoundError("the benchmark suite (benchmarks/run_all.py) is not here; run from a source "
                            f"checkout or pass --benchmarks-dir. Tried: {', '.join(map(str, tried))}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="the < 5 minute demo: small shapes, few repeats")
    parser.add_argument("--out", default=None, help="results directory (default: benchmarks/results/)")
    parser.add_argument("--sections", default=None,
                        help="comma-separated subset of ops,train_step,flops,quality,roofline,gpu (default: all)")
    parser.add_argument("--presets", default=None, help="training-step presets (default: tiny,small)")
    parser.add_argument("--benchmarks-dir", default=None, help=f"where benchmarks/ is (or ${ENV_VAR})")


def _load_run_all(directory: Path):
    spec = importlib.util.spec_from_file_location("electra_fast_benchmarks_run_all", directory / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args: argparse.Namespace) -> int:
    """Run the suite with parsed options; its exit status (1 when a section failed)."""
    directory = find_benchmarks(args.benchmarks_dir)
    argv = ["--quick"] if args.quick else []
    for flag in ("out", "sections", "presets"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag}", value]
    return _load_run_all(directory).main(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="electra-fast bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
