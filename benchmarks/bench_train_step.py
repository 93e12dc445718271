"""One ELECTRA pre-training step: ours (ElectraForPretraining) vs the common Hugging Face recipe.

Baseline ("hf-*"), built the way a user wires transformers' ELECTRA classes as they come:
    generator      ElectraForMaskedLM (a generator-sized config: the preset's fraction of hidden/FFN/heads)
                   computing logits at EVERY position [B, T, V] and its cross-entropy over the masked ones
    discriminator  ElectraForPreTraining, BCEWithLogitsLoss over attention_mask (its own loss)
    tying          one embedding block (word/position/type/LayerNorm) shared by both; the generator's
                   output layer tied to its input embedding (transformers' default)
    masking        15% of real non-special tokens (Bernoulli), 85% of them -> [MASK]
    sampling       on the dense logits of the masked positions: Gumbel-argmax (as the official code)
                   or softmax + torch.multinomial
    loss           mlm + 50 * rtd, AdamW step
Ours: `ElectraForPretraining(config)` of the same preset, without early exit, with budgeted early exit
(keep a fraction of the positions after the default exit layer), with threshold early exit, with each
statistical generator, and (full run) with its encoder layers compiled as `electra-fast pretrain --compile`
compiles them ("ours-compiled"; compiled during the untimed first round). Both sides: same batches (the bundled corpus, packed
to the preset's length with a WordPiece vocabulary of the preset's size), same thread count, same
optimiser, one process, and the configurations interleaved step by step (the starting configuration
rotates every round), so machine drift lands on all of them alike.

Threshold early exit needs confident exit heads, which an untrained model does not have: the network models
are first trained for a few steps (untimed, the same weights loaded into every network configuration), and
the per-layer active fractions are the ones measured during the timed steps. A budget's fractions are exact.

A second table ("discriminator") times the discriminator's forward + backward alone, with and without each
early exit, interleaved: its wall-clock saving next to the analytic FLOPs saving says what the exit
machinery costs.

FLOPs/s uses the analytic model FLOPs (electra_fast.flops.train_step_flops, 3x-forward convention) of
OUR configuration for every row of a preset, including the baselines: it is "useful work per second",
so its ratios equal the tokens/s ratios; the HF generator's extra all-position logits are not credited.

    python benchmarks/bench_train_step.py [--quick] [--presets tiny,small] [--out DIR]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.profiler import record_function

# this directory, for `common`; electra_fast is always the installed package (common.py checks it is built)
sys.path.insert(0, str(Path(__file__).resolve().parent))

HF_SAMPLINGS = ("gumbel", "multinomial")
STATISTICAL = ("uniform", "unigram", "cluster")
# the profiler ranges of a step (profile_step.py attributes op time to them)
PHASES = ("step.forward", "step.backward", "step.optimizer")


# ------------------------------------------------------------------------------------------------ data
@dataclass
class Corpus:
    """Packed batches of the bundled corpus for one (vocab, batch, seq) and the token counts of the train split."""

    batches: List[Dict[str, torch.Tensor]]
    heldout: torch.Tensor  # [N, T] int64 held-out sequences
    ids: object  # electra_fast.data.SpecialIds
    counts: torch.Tensor  # [V] int64 token frequencies over the train split
    tokenizer: object
    packed: object  # electra_fast.data.PackedCorpus, for longer runs (data.PackedBatches)


def load_corpus(vocab_size: int, batch: int, seq_len: int, n_batches: int, *, seed: int = 0) -> Corpus:
    """The bundled corpus, tokenised with a WordPiece vocabulary trained to `vocab_size`, packed to seq_len."""
    from electra_fast import data

    paths = [data.bundled_corpus()]
    tokenizer = data.tokenizer_for(paths, vocab_size=vocab_size)
    corpus = data.prepare(paths, tokenizer, seq_len)
    order = data.PackedBatches(corpus, data.Layout(batch), seed=seed)
    batches = [order.step(s)[0] for s in range(n_batches)]
    train = data.rows(corpus.train, range(len(corpus.train)))
    counts = torch.bincount(train.flatten(), minlength=vocab_size)[:vocab_size]
    heldout = data.rows(corpus.heldout, range(len(corpus.heldout)))
    return Corpus(batches, heldout, corpus.ids, counts, tokenizer, corpus)


def electra_config(preset: str, corpus: Corpus, **overrides):
    """The preset with the corpus tokenizer's special ids (vocab size kept at the preset's)."""
    from electra_fast.models import ElectraConfig

    ids = corpus.ids
    return ElectraConfig.preset(preset, pad_token_id=ids.pad, cls_token_id=ids.cls, sep_token_id=ids.sep,
                                mask_token_id=ids.mask, **overrides)


def make_sampler(kind: str, config, counts: torch.Tensor):
    """The statistical generator's sampler, built from corpus counts, excluding the special ids."""
    from electra_fast import samplers

    exclude = (config.pad_token_id, config.cls_token_id, config.sep_token_id, config.mask_token_id)
    if kind == "uniform":
        return samplers.UniformSampler(config.vocab_size, exclude_ids=exclude)
    if kind == "unigram":
        return samplers.UnigramSampler.from_counts(counts, exclude_ids=exclude)
    if kind == "cluster":
        return samplers.ClusterSampler.from_frequencies(counts, num_clusters=100, exclude_ids=exclude)
    raise ValueError(f"unknown statistical generator {kind!r}; expected one of {STATISTICAL}")


# ------------------------------------------------------------------------------------------ HF baseline
class HFPretraining(nn.Module):
    """transformers' ElectraForMaskedLM + ElectraForPreTraining wired the common way (module docstring)."""

    def __init__(self, config, sampling: str = "gumbel"):
        super().__init__()
        import transformers

        if sampling not in HF_SAMPLINGS:
            raise ValueError(f"sampling must be one of {HF_SAMPLINGS}, got {sampling!r}")
        common = dict(vocab_size=config.vocab_size, embedding_size=config.embedding_size,
                      max_position_embeddings=config.max_position_embeddings, type_vocab_size=config.type_vocab_size,
                      hidden_dropout_prob=config.hidden_dropout_prob, pad_token_id=config.pad_token_id,
                      attention_probs_dropout_prob=config.attention_probs_dropout_prob,
                      layer_norm_eps=config.layer_norm_eps)
        gen_cfg = transformers.ElectraConfig(hidden_size=config.gen_hidden_size,
                                             num_hidden_layers=config.gen_num_hidden_layers,
                                             num_attention_heads=config.gen_num_attention_heads,
                                             intermediate_size=config.gen_intermediate_size, **common)
        disc_cfg = transformers.ElectraConfig(hidden_size=config.hidden_size,
                                              num_hidden_layers=config.num_hidden_layers,
                                              num_attention_heads=config.num_attention_heads,
                                              intermediate_size=config.intermediate_size, **common)
        self.generator = transformers.ElectraForMaskedLM(gen_cfg)
        self.discriminator = transformers.ElectraForPreTraining(disc_cfg)
        self.discriminator.electra.embeddings = self.generator.electra.embeddings
        self.config, self.sampling = config, sampling
        self.register_buffer("specials", torch.tensor([config.cls_token_id, config.sep_token_id, config.mask_token_id]))

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        cfg = self.config
        candidates = attention_mask.bool() & ~torch.isin(input_ids, self.specials)
        is_masked = (torch.rand(input_ids.shape) < cfg.mask_prob) & candidates
        to_mask = is_masked & (torch.rand(input_ids.shape) < cfg.mask_fraction)
        masked = torch.where(to_mask, torch.full_like(input_ids, cfg.mask_token_id), input_ids)
        labels = torch.where(is_masked, input_ids, torch.full_like(input_ids, -100))
        gen = self.generator(input_ids=masked, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             labels=labels)
        with torch.no_grad():
            logits = gen.logits[is_masked].float()
            if self.sampling == "gumbel":
                u = torch.rand_like(logits)
                samples = (logits - torch.log(-torch.log(u + 1e-9) + 1e-9)).argmax(-1)
            else:
                samples = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1)
            corrupted = input_ids.masked_scatter(is_masked, samples)
        is_replaced = (corrupted != input_ids).long()
        disc = self.discriminator(input_ids=corrupted, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids, labels=is_replaced)
        return gen.loss + cfg.disc_weight * disc.loss


# ------------------------------------------------------------------------------------------- the runners
@dataclass
class Runner:
    """One configuration: a model, its optimiser, and a step over a batch that returns the active fractions."""

    name: str
    family: str  # "hf" | "ours"
    model: nn.Module
    config: object
    exit: str = ""  # "", "threshold 0.9", "keep 0.5"
    generator: str = "network"
    times: List[float] = field(default_factory=list)
    active: List[torch.Tensor] = field(default_factory=list)
    calls: int = 0

    def __post_init__(self):
        cfg = self.config
        if self.family == "hf":  # torch's AdamW as a user builds it
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.learning_rate, betas=(0.9, 0.999),
                                               eps=cfg.adam_epsilon, weight_decay=cfg.weight_decay)
        else:  # the optimizer electra-fast pretrain builds
            from electra_fast.training.optim import adamw

            self.optimizer, _ = adamw(self.model, lr=cfg.learning_rate, eps=cfg.adam_epsilon,
                                      weight_decay=cfg.weight_decay, warmup=1, total_steps=1 << 30)
        self.model.train()

    def step(self, batch: Dict[str, torch.Tensor], record: bool = True) -> None:
        """One training step, its phases in the profiler ranges PHASES (a few microseconds when no profiler runs)."""
        self.calls += 1
        forward, backward, optimizer = PHASES
        with record_function(forward):
            if self.family == "hf":
                loss = self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                fractions = None
            else:
                out = self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                                 seed=1234, offset=self.calls)
                loss, fractions = out.loss, out.active_fractions.detach()
        with record_function(backward):
            loss.backward()
        with record_function(optimizer):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if record and fractions is not None:
            self.active.append(fractions)


def exit_variants(base, keeps: Sequence[float], thresholds: Sequence[float]) -> List[tuple]:
    """(name, config, label) of ours without early exit, with each budget and with each threshold."""
    from electra_fast.models import EarlyExitConfig

    return ([("ours", base, "")]
            + [(f"ours-keep{k:g}", base.replace(early_exit=EarlyExitConfig(keep=k)), f"keep {k:g}") for k in keeps]
            + [(f"ours-exit{t:g}", base.replace(early_exit=EarlyExitConfig(threshold=t)), f"threshold {t:g}")
               for t in thresholds])


def warm_state(base, corpus: Corpus, warm_steps: int) -> Dict[str, torch.Tensor]:
    """Weights after warm_steps untimed steps, with the default exit head trained too (so thresholds bite)."""
    from electra_fast.models import EarlyExitConfig, ElectraForPretraining

    warm = Runner("warm-up", "ours", ElectraForPretraining(base.replace(early_exit=EarlyExitConfig(threshold=1.0))),
                  base)
    for k in range(warm_steps):
        warm.step(corpus.batches[k % len(corpus.batches)], record=False)
    return warm.model.state_dict()


def build_runners(preset: str, corpus: Corpus, keeps: Sequence[float], thresholds: Sequence[float],
                  statistical: Sequence[str], hf_samplings: Sequence[str] = HF_SAMPLINGS,
                  warm_steps: int = 0, compiled: bool = False) -> List[Runner]:
    """The HF baselines, ours without/with early exit (warmed alike), ours with each statistical generator, and
    ours with its layers compiled when `compiled`."""
    from electra_fast.models import ElectraForPretraining
    from electra_fast.training.distributed import compile_layers

    torch.manual_seed(0)
    base = electra_config(preset, corpus)
    runners = [Runner(f"hf-{s}", "hf", HFPretraining(base, s), base) for s in hf_samplings]
    state = warm_state(base, corpus, warm_steps) if thresholds or keeps else None
    for name, cfg, label in exit_variants(base, keeps, thresholds):
        model = ElectraForPretraining(cfg)
        if state is not None:
            model.load_state_dict(state, strict=False)  # "ours" without early exit has no exit head
        runners.append(Runner(name, "ours", model, cfg, exit=label))
    for kind in statistical:
        cfg = base.replace(generator=kind)
        runners.append(Runner(f"ours-{kind}", "ours", ElectraForPretraining(cfg, make_sampler(kind, cfg, corpus.counts)),
                              cfg, generator=kind))
    if compiled:
        model = ElectraForPretraining(base)
        compile_layers(model)
        runners.append(Runner("ours-compiled", "ours", model, base))
    return runners


def interleave(runners: Sequence[Runner], batches: Sequence[Dict[str, torch.Tensor]], rounds: int,
               warmup_rounds: int = 1) -> None:
    """Every round runs one step of every runner on the same batch, starting one runner later each round."""
    for r in range(warmup_rounds + rounds):
        batch = batches[r % len(batches)]
        start = r % len(runners)
        for runner in list(runners[start:]) + list(runners[:start]):
            t0 = time.perf_counter()
            runner.step(batch, record=r >= warmup_rounds)
            if r >= warmup_rounds:
                runner.times.append(time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ FLOPs
def step_flops(config, batch: int, seq_len: int, active_fractions: Optional[Sequence[float]] = None) -> Dict[str, float]:
    """Analytic train-step FLOPs (electra_fast.flops, official counting rules, backward = 2x forward):
    generator, heads, total, and "discriminator" = everything the discriminator side runs: its
    embeddings and layers, its RTD head and any exit heads (the MLM head is charged to the generator)."""
    from electra_fast import flops

    out = flops.train_step_flops(config, batch, seq_len, active_fractions=active_fractions)
    mlm = 0.0
    if config.generator == "network":
        mlm = flops.mlm_head_flops(config, config.mask_prob * seq_len) * batch * (1.0 + out.backward_factor)
    return {"generator": out.generator + mlm, "discriminator": out.discriminator + out.heads - mlm,
            "heads": out.heads, "total": out.total}


def summarise(runners: Sequence[Runner], preset: str, batch: int, seq_len: int) -> List[Dict[str, object]]:
    """Rows: time per step (median, p10, p90), tokens/s, FLOPs/s, the ratios against the HF baselines
    measured in the same run, and for early exit the active fractions and the FLOPs saved."""
    tokens = batch * seq_len
    ours_base = next((r for r in runners if r.name == "ours"), None)
    ref_cfg = ours_base.config if ours_base is not None else runners[0].config
    base_flops = step_flops(ref_cfg, batch, seq_len)
    medians = {r.name: statistics.median(r.times) for r in runners}
    hf_fastest = min((medians[r.name] for r in runners if r.family == "hf"), default=None)
    rows = []
    for r in runners:
        q = statistics.quantiles(r.times, n=10, method="inclusive") if len(r.times) > 1 else [r.times[0]] * 9
        med = medians[r.name]
        fractions = torch.stack(r.active).mean(0).tolist() if r.active else None
        if r.family == "hf":
            fl = base_flops
        else:
            fl = step_flops(r.config, batch, seq_len, fractions if r.exit else None)
        row = {"section": "train_step", "preset": preset, "batch": batch, "seq_len": seq_len, "config": r.name,
               "family": r.family, "generator": r.generator, "early_exit": r.exit,
               "step_ms": med * 1e3, "p10_ms": q[0] * 1e3, "p90_ms": q[-1] * 1e3, "repeats": len(r.times),
               "tokens_per_s": tokens / med, "model_flops": fl["total"], "flops_per_s": fl["total"] / med,
               "disc_flops": fl["discriminator"], "gen_flops": fl["generator"], "head_flops": fl["heads"]}
        for hf in (x for x in runners if x.family == "hf"):
            row[f"speedup_vs_{hf.name}"] = medians[hf.name] / med
        if hf_fastest is not None:
            row["speedup_vs_hf_fastest"] = hf_fastest / med
        if r.exit:
            row["active_fractions"] = " ".join(f"{f:.3f}" for f in fractions)
            row["disc_flops_saved"] = 1.0 - fl["discriminator"] / base_flops["discriminator"]
            if ours_base is not None:
                row["wall_saved_vs_ours"] = 1.0 - med / medians["ours"]
        rows.append(row)
    return rows


def time_discriminators(preset: str, corpus: Corpus, keeps: Sequence[float], thresholds: Sequence[float],
                        rounds: int, warm_steps: int) -> List[Dict[str, object]]:
    """The discriminator's forward + backward alone (exit heads and their supervision included), without and
    with each early exit, interleaved on the same batches; wall-clock saving next to the analytic one."""
    from electra_fast.models import ElectraForPretraining

    torch.manual_seed(0)
    base = electra_config(preset, corpus)
    state = warm_state(base, corpus, warm_steps)
    models = []
    for name, cfg, label in exit_variants(base, keeps, thresholds):
        model = ElectraForPretraining(cfg)
        model.load_state_dict(state, strict=False)
        models.append((name, cfg, label, model.discriminator.train(), [], []))

    def step(disc, batch, cfg):
        out = disc.run(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                       exits=cfg.early_exit is not None, supervise=cfg.early_exit is not None)
        loss = out.logits.square().mean() + sum(r.logits.square().mean() for r in out.exit_records)
        loss.backward()
        disc.zero_grad(set_to_none=True)
        return out.active_fractions.detach()

    for r in range(1 + rounds):
        batch = corpus.batches[r % len(corpus.batches)]
        order = models[r % len(models):] + models[:r % len(models)]
        for name, cfg, label, disc, times, active in order:
            t0 = time.perf_counter()
            fractions = step(disc, batch, cfg)
            if r:
                times.append(time.perf_counter() - t0)
                active.append(fractions)
    batch, seq_len = corpus.batches[0]["input_ids"].shape
    base_ms = statistics.median(models[0][4]) * 1e3
    base_flops = step_flops(base, batch, seq_len)["discriminator"]
    rows = []
    for name, cfg, label, _, times, active in models:
        ms = statistics.median(times) * 1e3
        fractions = torch.stack(active).mean(0).tolist()
        saved = 1.0 - step_flops(cfg, batch, seq_len, fractions if label else None)["discriminator"] / base_flops
        wall = 1.0 - ms / base_ms
        rows.append({"section": "discriminator", "preset": preset, "batch": batch, "seq_len": seq_len,
                     "config": name, "early_exit": label, "fwd_bwd_ms": ms, "repeats": len(times),
                     "wall_saved_vs_ours": wall, "disc_flops_saved": saved,
                     "wall_over_flops_saving": wall / saved if saved > 0 else float("nan"),
                     "active_fractions": " ".join(f"{f:.3f}" for f in fractions)})
    return rows


PLANS = {
    # preset: (batch, seq_len, rounds, warm_steps) for the full run and for --quick
    "full": {"tiny": (32, 128, 12, 150), "small": (8, 128, 10, 30)},
    "quick": {"tiny": (8, 128, 2, 20), "small": (4, 128, 2, 10)},
}
KEEPS = {"full": (0.5,), "quick": (0.5,)}
THRESHOLDS = {"full": (0.95, 0.9), "quick": (0.9,)}
STATISTICAL_RUNS = {"full": STATISTICAL, "quick": ("uniform",)}
COMPILED_RUNS = {"full": True, "quick": False}  # compiling takes about a minute per preset on 2 cores


def run(presets: Sequence[str] = ("tiny", "small"), quick: bool = False, *, keeps: Optional[Sequence[float]] = None,
        thresholds: Optional[Sequence[float]] = None, statistical: Optional[Sequence[str]] = None,
        plan: Optional[Dict[str, tuple]] = None, compiled: Optional[bool] = None) -> List[Dict[str, object]]:
    """Benchmark each preset; returns the rows (see summarise and time_discriminators)."""
    mode = "quick" if quick else "full"
    plan = plan or PLANS[mode]
    keeps = KEEPS[mode] if keeps is None else keeps
    thresholds = THRESHOLDS[mode] if thresholds is None else thresholds
    statistical = STATISTICAL_RUNS[mode] if statistical is None else statistical
    compiled = COMPILED_RUNS[mode] if compiled is None else compiled
    rows: List[Dict[str, object]] = []
    for preset in presets:
        batch, seq_len, rounds, warm_steps = plan[preset]
        from electra_fast.models import ElectraConfig

        vocab = ElectraConfig.preset(preset).vocab_size
        corpus = load_corpus(vocab, batch, seq_len, max(rounds + 1, warm_steps, 1))
        runners = build_runners(preset, corpus, keeps, thresholds, statistical, warm_steps=warm_steps,
                                compiled=compiled)
        interleave(runners, corpus.batches, rounds)
        rows += summarise(runners, preset, batch, seq_len)
        if keeps or thresholds:
            rows += time_discriminators(preset, corpus, keeps, thresholds, rounds, warm_steps)
    return rows


COLUMNS = ["preset", "batch", "config", "step_ms", "tokens_per_s", "speedup_vs_hf_fastest", "disc_flops_saved",
           "wall_saved_vs_ours", "active_fractions"]
DISCRIMINATOR_COLUMNS = ["preset", "batch", "config", "fwd_bwd_ms", "wall_saved_vs_ours", "disc_flops_saved",
                         "wall_over_flops_saving"]


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    from common import RESULTS_DIR, print_table, write_results

    parser = argparse.ArgumentParser(description="ELECTRA training step: ours vs the Hugging Face baseline")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    parser.add_argument("--presets", default="tiny,small")
    args = parser.parse_args(argv)
    rows = run([p for p in args.presets.split(",") if p], args.quick)
    print_table([r for r in rows if r["section"] == "train_step"], COLUMNS)
    print_table([r for r in rows if r["section"] == "discriminator"], DISCRIMINATOR_COLUMNS)
    write_results("train_step", [r for r in rows if r["section"] == "train_step"], args.out)
    write_results("exit_discriminator", [r for r in rows if r["section"] == "discriminator"], args.out)
    return rows


if __name__ == "__main__":
    main()
