"""pytest set-up for `pytest benchmarks/ --benchmark-only` (pytest-benchmark): the checkout and this
directory importable, torch seeded. Plain `pytest` never comes here (testpaths = ["tests"])."""
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
