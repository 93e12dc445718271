"""The pre-training loop behind `electra-fast pretrain`: one process, or many under `torchrun`.

Step s (0-based) of a run with W ranks, A accumulation micro-steps and B rows per micro-batch:
    shard m = rank * A + k for micro-step k (data.Layout); rows: data.PackedBatches / StreamingCorpus
    offset  = s * 2^20 + m      the Philox stream of that micro-batch (the model uses 2*offset, 2*offset+1)
    torch.manual_seed(seed ^ (offset * 0x9E3779B97F4A7C15 mod 2^63)) before it, so dropout is a function of
        (seed, s, m) as well: nothing random depends on the process layout or on resuming
    loss_m  = model(batch_m, seed=seed, offset=offset, step=s).loss / A, summed by backward; DDP averages
        over ranks, so every step's gradient is the mean over W * A shards of B rows
    clip the global gradient norm, AdamW step (β 0.9/0.999, ε 1e-6, weight decay 0.01 on matrices only:
        biases and LayerNorm weights are excluded), lr = peak * min((s+1)/warmup, (S-s)/(S-warmup)).
Hence one process with A = k computes exactly what k ranks with A = 1 compute, and a resumed run
computes exactly what an uninterrupted one does (tests/test_train.py checks both). 2^20 bounds W*A.

Held-out evaluation runs the model in eval mode on the first `eval_sequences` held-out rows with
seed EVAL_SEED and offsets EVAL_OFFSET + i, so the masked positions (and a statistical generator's
replacements) are the same in every evaluation of every run; it reports RTD loss, accuracy and AUC.

Output directory: checkpoint.safetensors (model with its sampler state, AdamW state as tensors; step, data
position, scheduler, config and arguments as JSON metadata; written to a temp file and renamed),
tokenizer.json, config.json, metrics.jsonl (one JSON object per logged step / evaluation), hf/ (the
final discriminator in Hugging Face format, when transformers is installed).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Callable, Optional

import torch
from torch import nn

from . import data as D
from .training.checkpoint import CHECKPOINT, CheckpointMeta, load_checkpoint, save_checkpoint
from .training.config import TrainConfig
from .training.distributed import init_distributed, unwrap, wrap
from .training.evaluation import evaluate
from .training.export import export_hf
from .training.optim import lr_factor, param_groups
from .training.seeds import SHARD_BITS, dropout_seed, step_offset
from .training.summary import Summary

# ------------------------------------------------------------------------------------------- trainer
def _check_output_dir(out: pathlib.Path, resume: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"output directory {str(out)!r} is not writable: {e.strerror or e}") from None
    if not resume and (out / CHECKPOINT).exists():
        raise FileExistsError(f"output directory {str(out)!r} already holds a checkpoint; pass --resume to "
                              f"continue it, or choose another --output (nothing was overwritten)")
    if resume and not (out / CHECKPOINT).exists():
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {str(out)!r}")


def build_config(cfg: TrainConfig, ids: D.SpecialIds, vocab_size: int, saved: Optional[dict] = None):
    from .models import EarlyExitConfig, ElectraConfig

    if saved is not None:
        return ElectraConfig.from_dict(saved)
    overrides = dict(vocab_size=vocab_size, pad_token_id=ids.pad, cls_token_id=ids.cls, sep_token_id=ids.sep,
                     mask_token_id=ids.mask, generator=cfg.generator)
    if cfg.early_exit_threshold is not None:
        overrides["early_exit"] = EarlyExitConfig(threshold=cfg.early_exit_threshold)
    for name in ("batch_size", "seq_len"):
        if getattr(cfg, name) is not None:
            overrides[name] = getattr(cfg, name)
    if cfg.lr is not None:
        overrides["learning_rate"] = cfg.lr
    overrides.update(cfg.model_overrides)
    config = ElectraConfig.preset(cfg.preset, **overrides)
    if config.seq_len > config.max_position_embeddings:
        raise ValueError(f"seq_len {config.seq_len} is larger than the {cfg.preset} preset's position table "
                         f"(max_position_embeddings={config.max_position_embeddings})")
    return config


def build_sampler(kind: str, vocab_size: int, ids: D.SpecialIds, train_split):
    """The statistical generator's sampler, its counts taken from the packed train split."""
    if kind == "network":
        return None
    from . import samplers

    exclude = [ids.pad, ids.unk, ids.cls, ids.sep, ids.mask]
    if kind == "uniform":
        return samplers.UniformSampler(vocab_size, exclude_ids=exclude)
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for start in range(0, len(train_split), 4096):
        block = D.rows(train_split, range(start, min(start + 4096, len(train_split))))
        counts += torch.bincount(block.flatten(), minlength=vocab_size).double()
    if kind == "unigram":
        return samplers.UnigramSampler.from_counts(counts, exclude_ids=exclude)
    return samplers.ClusterSampler.from_frequencies(counts, num_clusters=100)


def _default_model(config, sampler):
    from .models import ElectraForPretraining

    return ElectraForPretraining(config, sampler=sampler)


def _default_step_flops(config, batch, seq_len, active_fractions=None):
    from .flops import train_step_flops

    fractions = None if active_fractions is None else [float(f) for f in active_fractions]
    return train_step_flops(config, batch, seq_len, active_fractions=fractions).total


class Trainer:
    """Builds everything from a TrainConfig, then `run()` trains, evaluates, saves and exports.

    model_factory(config, sampler) -> module with the ElectraForPretraining call signature and output
    fields; step_flops(config, batch, seq_len, active_fractions) -> FLOPs of one step (electra_fast.flops).
    """

    def __init__(self, cfg: TrainConfig, *, model_factory: Callable = _default_model,
                 step_flops: Callable = _default_step_flops, log: Callable[[str], None] = print):
        cfg.validate()
        self.cfg, self.step_flops = cfg, step_flops
        self.dist = init_distributed(cfg.device)
        self.log = self.dist.main_only(log)
        self.out = pathlib.Path(cfg.output).expanduser().resolve()
        if self.dist.main:
            _check_output_dir(self.out, cfg.resume)
        self.dist.barrier()
        self.device = torch.device(cfg.device or (f"cuda:{self.dist.local_rank}" if torch.cuda.is_available()
                                                  else "cpu"))
        self.corpus_paths = D.resolve_corpus(cfg.corpus or [D.bundled_corpus()])

        checkpoint = None
        if cfg.resume:
            model_state, optim_state, meta = load_checkpoint(self.out / CHECKPOINT)
            checkpoint = model_state, optim_state, CheckpointMeta.from_dict(meta)
        saved_meta = checkpoint[2] if checkpoint else None
        self.tokenizer = self._tokenizer(saved_meta is not None)
        self.ids = D.SpecialIds.from_tokenizer(self.tokenizer)
        self.config = build_config(cfg, self.ids, self.tokenizer.get_vocab_size(),
                                   saved_meta.config if saved_meta else None)
        self.seq_len, self.batch = self.config.seq_len, self.config.batch_size
        self.layout = D.Layout(self.batch, self.dist.world, cfg.accumulation)
        if self.layout.world * self.layout.accum > 2**SHARD_BITS:
            raise ValueError(f"world size x accumulation must be <= 2^{SHARD_BITS}")

        self.packed = self._packed()
        sampler = build_sampler(self.config.generator, self.config.vocab_size, self.ids, self.packed.train)
        sampler = sampler.to(self.device) if sampler is not None else None
        torch.manual_seed(cfg.seed)  # the initial weights are a function of the seed alone
        self.model = model_factory(self.config, sampler).to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay),
                                           lr=self.config.learning_rate, betas=(0.9, 0.999),
                                           eps=self.config.adam_epsilon)
        self.warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(self.config.warmup_steps,
                                                                                cfg.steps // 10)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.warmup, cfg.steps))
        self.step, self.data_start, self.stats = 0, 0, {"tokens": 0, "flops": 0.0, "flops_full": 0.0, "time": 0.0}
        if checkpoint:
            self._restore(*checkpoint)
        self.step_base = self.step  # the data iterator counts steps from here
        self.model = wrap(self.model, self.dist, self.device, fsdp=cfg.fsdp, compile=cfg.compile)
        self.batches = self._batches()
        self.heldout = D.heldout_batches(self.packed, self.batch, cfg.eval_sequences)

    # -- set-up helpers
    def _tokenizer(self, resuming: bool):
        saved = self.out / "tokenizer.json"
        if resuming and saved.is_file():
            return D.load_tokenizer(saved)
        if self.dist.main:
            tok = D.tokenizer_for(self.corpus_paths, self.cfg.tokenizer, vocab_size=self.cfg.vocab_size,
                                  cache_dir=self.cfg.cache_dir)
            tok.save(str(saved))
        self.dist.barrier()  # training a tokenizer is not deterministic: every rank uses rank 0's
        return D.load_tokenizer(saved)

    def _packed(self) -> D.PackedCorpus:
        if self.dist.main:
            packed = D.prepare(self.corpus_paths, self.tokenizer, self.seq_len,
                               heldout_fraction=self.cfg.heldout_fraction, cache_dir=self.cfg.cache_dir)
        self.dist.barrier()
        if not self.dist.main:
            packed = D.prepare(self.corpus_paths, self.tokenizer, self.seq_len,
                               heldout_fraction=self.cfg.heldout_fraction, cache_dir=self.cfg.cache_dir)
        if len(packed.heldout) == 0:
            raise ValueError(f"the held-out split is empty (heldout_fraction={self.cfg.heldout_fraction} of "
                             f"{packed.meta['stats']['documents']} documents); raise --heldout-fraction")
        skipped = packed.meta["stats"]["skipped_lines"]
        if skipped:
            self.log(f"note: {skipped} corpus lines were not UTF-8 (or not JSON) and were skipped")
        return packed

    def _batches(self):
        if self.cfg.streaming:
            return D.StreamingCorpus(self.corpus_paths, self.tokenizer, self.seq_len, self.layout, self.dist.rank,
                                     heldout_fraction=self.cfg.heldout_fraction, start=self.data_start)
        return D.PackedBatches(self.packed, self.layout, self.dist.rank, seed=self.cfg.seed, start=self.data_start)

    # -- checkpoints
    def _state(self) -> tuple[dict, dict]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_state_dict(unwrap(self.model), self.optimizer, options=opts)

    def save(self) -> pathlib.Path:
        model_state, optim_state = self._state()  # every rank takes part (FSDP gathers)
        path = self.out / CHECKPOINT
        if self.dist.main:
            meta = CheckpointMeta(step=self.step, data_position=self.batches.position(self.step - self.step_base),
                                  scheduler=self.scheduler.state_dict(), config=self.config.to_dict(),
                                  train_config=dataclasses.asdict(self.cfg), warmup=self.warmup, stats=self.stats,
                                  world=self.dist.world)
            save_checkpoint(path, model_state=model_state, optim_state=optim_state, meta=meta.to_dict())
            (self.out / "config.json").write_text(self.config.to_json())
        self.dist.barrier()
        return path

    def _restore(self, model_state, optim_state, meta) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(self.model, self.optimizer, model_state_dict=model_state,
                       optim_state_dict=optim_state,
                       options=StateDictOptions(full_state_dict=True))
        self.scheduler.load_state_dict(meta.scheduler)
        self.warmup = meta.warmup
        self.step, self.data_start, self.stats = meta.step, meta.data_position, meta.stats

    # -- the loop
    def _micro_step(self, k: int, batch: dict) -> object:
        shard = self.layout.shards(self.dist.rank)[k]
        offset = step_offset(self.step, shard)
        torch.manual_seed(dropout_seed(self.cfg.seed, offset))
        batch = {name: t.to(self.device, non_blocking=True) for name, t in batch.items()}
        last = k == self.layout.accum - 1
        sync = contextlib.nullcontext() if last or self.dist.world == 1 else self.model.no_sync()
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                    else contextlib.nullcontext())
        with sync:
            with autocast:
                out = self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                                 seed=self.cfg.seed, offset=offset, step=self.step)
            (out.loss / self.layout.accum).backward()
        return out

    def _sync_sampler(self, before: Optional[torch.Tensor]) -> None:
        """All-reduce the cluster sampler's count updates of this step, so every rank holds the same counts."""
        sampler = getattr(unwrap(self.model), "sampler", None)
        counts = getattr(sampler, "counts", None)
        if before is None or counts is None or self.dist.world == 1:
            return
        delta = counts - before
        torch.distributed.all_reduce(delta)
        counts.copy_(before + delta)

    def train_step(self) -> dict:
        self.model.train()
        sampler_counts = getattr(getattr(unwrap(self.model), "sampler", None), "counts", None)
        before = sampler_counts.clone() if isinstance(sampler_counts, torch.Tensor) else None
        outs = [self._micro_step(k, b) for k, b in enumerate(self.batches.step(self.step - self.step_base))]
        lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
        grad_norm = (nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                     if self.cfg.grad_clip > 0 else None)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._sync_sampler(before)
        self.step += 1
        return {"outs": outs, "grad_norm": grad_norm, "lr": lr}

    def _account(self, result: dict, seconds: float) -> dict:
        """Tokens, FLOPs (as run, and without early exit) and logged metrics of one step."""
        outs = result["outs"]
        tokens = self.layout.global_batch * self.seq_len
        fractions = torch.stack([o.active_fractions.float().cpu() for o in outs]).mean(0)
        flops = self.step_flops(self.config, self.layout.global_batch, self.seq_len, fractions)
        full = self.step_flops(self.config, self.layout.global_batch, self.seq_len, None)
        self.stats["tokens"] += tokens
        self.stats["flops"] += float(flops)
        self.stats["flops_full"] += float(full)
        self.stats["time"] += seconds
        mean = lambda name: sum(float(getattr(o, name).detach()) for o in outs) / len(outs)  # noqa: E731
        record = {"step": self.step, "loss": mean("loss"), "rtd_loss": mean("rtd_loss"),
                  "rtd_accuracy": mean("rtd_accuracy"), "exit_fraction": 1.0 - fractions.mean().item(),
                  "lr": result["lr"], "tokens_per_s": tokens / seconds,
                  "flops_per_s": float(flops) / seconds}
        if outs[0].mlm_loss is not None:
            record["mlm_loss"] = mean("mlm_loss")
        if result["grad_norm"] is not None:
            record["grad_norm"] = float(result["grad_norm"])
        return record

    def _write_metrics(self, record: dict) -> None:
        if self.dist.main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def run(self) -> Summary:
        cfg = self.cfg
        bar = None
        if cfg.progress and self.dist.main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True)
        last_saved = self.step
        heldout = {}
        try:
            while self.step < cfg.steps:
                start = time.perf_counter()
                result = self.train_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                record = self._account(result, time.perf_counter() - start)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._write_metrics(record)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", rtd_acc=f"{record['rtd_accuracy']:.3f}",
                                    exit=f"{record['exit_fraction']:.2f}", tok_s=f"{record['tokens_per_s']:.0f}",
                                    flop_s=f"{record['flops_per_s']:.2e}", refresh=False)
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    heldout = evaluate(self.model, self.heldout, self.device)
                    self._write_metrics({"step": self.step, "eval": heldout})
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save()
                    last_saved = self.step
        except KeyboardInterrupt:
            if self.step > last_saved:
                self.log(f"\ninterrupted: saving step {self.step} to {self.out / CHECKPOINT} (resume with --resume)")
                self.save()
            raise
        finally:
            if bar is not None:
                bar.close()
        heldout = evaluate(self.model, self.heldout, self.device)
        self._write_metrics({"step": self.step, "eval": heldout})
        checkpoint = self.save()
        export = cfg.export_hf and self.dist.main
        hf_dir = export_hf(unwrap(self.model), self.tokenizer, self.out / "hf") if export else None
        summary = Summary.from_stats(self.stats, steps=self.step, heldout=heldout, checkpoint=str(checkpoint),
                                     hf_export=str(hf_dir) if hf_dir else None,
                                     metrics=str(self.out / "metrics.jsonl"))
        self.log(summary.text())
        return summary


def pretrain(cfg: TrainConfig, **kwargs) -> Summary:
    """Train as `cfg` says; the same call under torchrun trains with DDP (or FSDP)."""
    trainer = Trainer(cfg, **kwargs)
    try:
        return trainer.run()
    finally:
        if trainer.dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        sys.stdout.flush()
