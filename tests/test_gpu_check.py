"""tools/gpu_check.py (`make gpu-check`) without a GPU: it refuses to run, its stages point at what exists and
fit the 8-minute target, and with stand-in stages it writes one report with every stage's output and a
summary, runs every stage whatever failed before, and stops a stage at three times its budget."""
import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_refuses_without_a_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--report", str(tmp_path / "report.txt")]) == 2
    assert not (tmp_path / "report.txt").exists()


def test_stages_exist_and_fit_the_target():
    stages = gpu_check.stages("out")
    assert [s.name for s in stages] == ["env", "selftest", "gpu tests", "asserts", "bench"]
    assert sum(s.budget_s for s in stages) <= gpu_check.TARGET_S == 600
    assert (ROOT / gpu_check.ASSERTS).is_file()
    for stage in stages:
        if "-m" in stage.command and stage.command[stage.command.index("-m") + 1].startswith("electra_fast"):
            assert importlib.util.find_spec(stage.command[stage.command.index("-m") + 1]) is not None


def test_report_with_stand_in_stages(monkeypatch, tmp_path):
    py = sys.executable
    stand_ins = [gpu_check.Stage("first", [py, "-c", "print('first says hello')"], 5),
                 gpu_check.Stage("broken", [py, "-c", "import sys; print('about to fail'); sys.exit(3)"], 5),
                 gpu_check.Stage("slow", [py, "-c", "import time; time.sleep(30)"], 1),
                 gpu_check.Stage("last", [py, "-c", "import os; print('cache', os.environ['TRITON_CACHE_DIR'])"], 5)]
    monkeypatch.setattr(gpu_check, "stages", lambda bench_out: stand_ins)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Stand-in GPU")
    report = tmp_path / "report.txt"
    assert gpu_check.main(["--report", str(report)]) == 1
    text = report.read_text()
    assert text.startswith("gpu-check on Stand-in GPU")
    for needle in ("=== first:", "first says hello", "about to fail", "cache ", "=== summary",
                   "FAILED (exit 3)", "FAILED (stopped at 3 s)", "FAILED: broken, slow"):
        assert needle in text, needle
    summary = text[text.index("=== summary"):].splitlines()
    assert summary[1].split()[:2] == ["first", "ok"] and summary[4].split()[:2] == ["last", "ok"]


def test_no_triton_interpreter_in_the_stages(monkeypatch, tmp_path):
    """The stages must run compiled Triton on the GPU even when the caller's environment says interpret."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    py = sys.executable
    probe = gpu_check.Stage("probe", [py, "-c", "import os; print('interpret', os.environ.get('TRITON_INTERPRET'))"], 5)
    monkeypatch.setattr(gpu_check, "stages", lambda bench_out: [probe])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Stand-in GPU")
    assert gpu_check.main(["--report", str(tmp_path / "r.txt")]) == 0
    assert "interpret None" in (tmp_path / "r.txt").read_text()
