"""pytest set-up for `pytest benchmarks/ --benchmark-only` (pytest-benchmark): this directory importable
(electra_fast is the installed package), torch seeded. Plain `pytest` never comes here (testpaths = ["tests"])."""
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
