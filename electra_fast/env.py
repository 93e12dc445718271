"""`python -m electra_fast.env`: versions and backends, to paste into a bug report."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

import torch

from . import __version__, _extension, backend


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report() -> dict:
    """Facts about this installation as a flat dict of strings."""
    facts = {
        "electra_fast": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": f"{cpu_model()} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})",
        "torch": torch.__version__,
        "torch CUDA": str(torch.version.cuda),
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "triton": _version("triton"),
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET", "0"),
        "extension _C": "built" if _extension.load() else "not built",
    }
    facts.update({f"_C {k}": v for k, v in _extension.build_info().items()})
    facts["backends available"] = ", ".join(backend.available())
    facts["backend for cpu tensors"] = backend.select("cpu")
    if torch.cuda.is_available():
        facts["backend for cuda tensors"] = backend.select("cuda")
    return facts


def main() -> None:
    facts = report()
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
