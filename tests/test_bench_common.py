"""benchmarks/common.py: timing, results files, CLI flags and the compiled baseline."""
import csv
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import common  # noqa: E402


def test_time_fn_orders_percentiles():
    t = common.time_fn(lambda: torch.randn(1000).sum(), warmup=1, repeats=12, min_seconds=0)
    assert t.repeats >= 12
    assert 0 < t.p10 <= t.median <= t.p90
    calls = []
    t2 = common.time_fn(lambda v: calls.append(v), setup=lambda: "fresh", warmup=2, repeats=5, min_seconds=0)
    assert calls == ["fresh"] * (2 + t2.repeats)
    assert set(t.as_dict("fwd_")) == {"fwd_ms", "fwd_p10_ms", "fwd_p90_ms", "fwd_repeats"}


def test_machine_info_keys():
    info = common.machine_info()
    for key in ("cpu", "cores", "torch_threads", "gpu", "torch", "triton", "python", "electra_fast",
                "git_commit", "date"):
        assert info[key]


def test_write_results_every_row_has_machine_info(tmp_path):
    rows = [{"impl": "a", "ms": 1.5}, {"impl": "b", "ms": 2.0, "extra": 3}]
    csv_path, json_path = common.write_results("demo", rows, tmp_path)
    with open(csv_path) as f:
        read = list(csv.DictReader(f))
    assert [r["impl"] for r in read] == ["a", "b"]
    assert all(r["torch"] == torch.__version__ and r["cpu"] for r in read)
    assert read[1]["extra"] == "3"
    data = json.loads(json_path.read_text())
    assert data["machine"]["torch"] == torch.__version__
    assert data["rows"][0]["git_commit"] == data["machine"]["git_commit"]


def test_parse_args():
    args = common.parse_args("x", ["cpp", "triton"], ["--quick", "--backends", "cpp"])
    assert args.quick and args.backends == ["cpp"]
    assert common.parse_args("x", ["cpp", "triton"], []).backends == ["cpp", "triton"]


def test_compiled_falls_back_with_note():
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    fn = common.compiled(lambda x: x.sum(), backend=broken_backend)
    assert fn(torch.ones(3)).item() == 3.0
    assert not fn.ok and "no compiler here" in fn.note
    assert fn(torch.ones(4)).item() == 4.0


def test_compiled_compiles():
    fn = common.compiled(lambda x: x * 2 + 1)
    assert torch.equal(fn(torch.ones(3)), torch.full((3,), 3.0))
    assert fn.ok and fn.note == ""


def test_a_benchmark_refuses_to_time_kernels_that_are_not_built(monkeypatch):
    from electra_fast import backend

    monkeypatch.setattr(backend, "available", lambda device=None: ["reference"])
    with pytest.raises(SystemExit, match=r"backend\(s\) cpp not available for cpu tensors in the installed electra_fast"):
        common.parse_args("x", ["cpp"], [])
    common.require_backends(["reference"], "cpu")  # what is there runs


def test_add_speedups_divides_each_baseline_by_the_row_within_its_group():
    from common import add_speedups

    rows = [{"mode": "fwd", "impl": "eager", "ms": 2.0}, {"mode": "fwd", "impl": "ours", "ms": 0.5},
            {"mode": "both", "impl": "eager", "ms": 6.0}, {"mode": "both", "impl": "ours", "ms": 2.0}]
    add_speedups(rows, ("eager",))
    assert [r["speedup_vs_eager"] for r in rows] == [1.0, 4.0, 1.0, 3.0]
