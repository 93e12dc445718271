"""`electra-fast bench [--quick] [--out DIR]`: the benchmark suite (benchmarks/run_all.py) from the command line.

The suite's code lives in the repository's benchmarks/ directory and is installed with the package as
`electra_fast._benchmarks` (setup.py maps the one onto the other), so it runs after `pip install
"electra_fast[bench]"` from any folder. `--benchmarks-dir` (or $ELECTRA_FAST_BENCHMARKS) runs another copy
of the suite instead; either way it measures the installed package.

For the CLI: `add_arguments(parser)` adds the options to a sub-parser, `run(args) -> int` runs it;
`main(argv) -> int` is the same as a standalone entry.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

ENV_VAR = "ELECTRA_FAST_BENCHMARKS"
DEFAULT_OUT = "bench_results"


def find_benchmarks(explicit: Optional[str] = None) -> Path:
    """The suite's directory: `explicit`, else $ELECTRA_FAST_BENCHMARKS, else the installed copy."""
    chosen = explicit or os.environ.get(ENV_VAR)
    if chosen:
        path = Path(chosen)
        if not (path / "run_all.py").is_file():
            raise FileNotFoundError(f"no benchmark suite at {path} (it has no run_all.py)")
        return path.resolve()
    package = Path(__file__).resolve().parent
    # installed: the copy inside the package; editable install or source checkout: the one beside it
    for path in (package / "_benchmarks", package.parent / "benchmarks"):
        if (path / "run_all.py").is_file():
            return path
    raise FileNotFoundError("this electra_fast install has no benchmark suite (electra_fast._benchmarks); "
                            "reinstall it with pip install 'electra_fast[bench]'")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="the < 5 minute demo: small shapes, few repeats")
    parser.add_argument("--out", default=DEFAULT_OUT, help="results directory (default: ./%(default)s)")
    parser.add_argument("--sections", default=None,
                        help="comma-separated subset of ops,train_step,profile,scaling,flops,quality,roofline,gpu "
                             "(default: all)")
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
