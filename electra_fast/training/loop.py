"""The training loop: Trainer builds the model and optimizer of a RunSetup, then steps, evaluates, saves.

One step (see electra_fast.train for the whole algorithm): every micro-batch of this rank with its own Philox
offset and torch seed (training.seeds), gradients summed over micro-steps and averaged over ranks by DDP,
global-norm clipping, one AdamW and one scheduler step, then the cluster sampler's count updates all-reduced.
Every `log_every` steps a record goes to metrics.jsonl; every `eval_every` steps an evaluation; every
`save_every` steps a checkpoint (and one on Ctrl-C); at the end an evaluation, a checkpoint, the Hugging Face
export and the Summary.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import time
from typing import Callable, Optional

import torch

from .checkpoint import CHECKPOINT, CheckpointMeta, TrainingCheckpoint
from .distributed import clip_grad_norm, full_parameters, unwrap, wrap
from .evaluation import evaluate
from .export import export_hf
from .optim import adamw
from .seeds import dropout_seed, step_offset
from .setup import RunSetup
from .summary import START_METRICS, Summary


class Trainer:
    """Trains the model of a RunSetup: `run()` trains, evaluates, saves and exports.

    model_factory(config, sampler) -> module with the ElectraForPretraining call signature and output
    fields; step_flops(config, batch, seq_len, active_fractions) -> FLOPs of one step (electra_fast.flops);
    log prints (on rank 0 only).
    """

    def __init__(self, setup: RunSetup, *, model_factory: Callable, step_flops: Callable,
                 log: Callable[[str], None]):
        cfg = self.cfg = setup.cfg
        self.dist, self.device, self.out = setup.dist, setup.device, setup.out
        self.config, self.layout, self.warmup = setup.config, setup.layout, setup.warmup
        self.tokenizer, self.batches, self.heldout = setup.tokenizer, setup.batches, setup.heldout
        self.yardstick, self.identity = setup.yardstick, setup.identity
        self.step_flops, self.log = step_flops, setup.dist.main_only(log)

        torch.manual_seed(cfg.seed)  # the initial weights are a function of the seed alone
        model = model_factory(self.config, setup.sampler).to(self.device)
        self.optimizer, self.scheduler = adamw(model, lr=self.config.learning_rate, eps=self.config.adam_epsilon,
                                               weight_decay=cfg.weight_decay, warmup=self.warmup,
                                               total_steps=cfg.steps)
        # The model as it runs (layers compiled and under DDP/FSDP when asked); unwrap(self.model) is the module.
        self.model = wrap(model, self.dist, self.device, fsdp=cfg.fsdp, compile=cfg.compile)
        self.step, self.stats = 0, {"tokens": 0, "flops": 0.0, "flops_full": 0.0, "time": 0.0}
        if setup.checkpoint is not None:  # after wrapping: FSDP shards the AdamW state as it shards the weights
            setup.checkpoint.restore(unwrap(self.model), self.optimizer)
            self.scheduler.load_state_dict(setup.checkpoint.meta.scheduler)
            self.step, self.stats = setup.checkpoint.meta.step, setup.checkpoint.meta.stats
        self.step_base = self.step  # the data iterator counts steps from here

    # -- checkpoints
    def checkpoint_meta(self) -> CheckpointMeta:
        """Where the run stands now, as the checkpoint stores it."""
        return CheckpointMeta(step=self.step, data_position=self.batches.position(self.step - self.step_base),
                              scheduler=self.scheduler.state_dict(), config=self.config.to_dict(),
                              train_config=dataclasses.asdict(self.cfg), warmup=self.warmup, stats=self.stats,
                              world=self.dist.world, identity=self.identity)

    def save(self) -> pathlib.Path:
        """Write <output>/checkpoint.safetensors and config.json; every rank must call this (FSDP gathers)."""
        checkpoint = TrainingCheckpoint.capture(unwrap(self.model), self.optimizer, self.checkpoint_meta())
        path = self.out / CHECKPOINT
        if self.dist.main:
            checkpoint.save(path)
            (self.out / "config.json").write_text(self.config.to_json())
        self.dist.barrier()
        return path

    # -- one step
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

    def _sampler_counts(self) -> Optional[torch.Tensor]:
        """The cluster sampler's counts (updated by every forward), or None for other generators."""
        counts = getattr(getattr(unwrap(self.model), "sampler", None), "counts", None)
        return counts if isinstance(counts, torch.Tensor) else None

    def _sync_sampler(self, before: Optional[torch.Tensor]) -> None:
        """All-reduce the cluster sampler's count updates of this step, so every rank holds the same counts."""
        counts = self._sampler_counts()
        if before is None or counts is None or self.dist.world == 1:
            return
        delta = counts - before
        torch.distributed.all_reduce(delta)
        counts.copy_(before + delta)

    def train_step(self) -> dict:
        self.model.train()
        counts = self._sampler_counts()
        before = counts.clone() if counts is not None else None
        outs = [self._micro_step(k, b) for k, b in enumerate(self.batches.step(self.step - self.step_base))]
        lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
        grad_norm = (clip_grad_norm(self.model, self.cfg.grad_clip)
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
        seq_len = self.config.seq_len
        tokens = self.layout.global_batch * seq_len
        fractions = torch.stack([o.active_fractions.float().cpu() for o in outs]).mean(0)
        flops = self.step_flops(self.config, self.layout.global_batch, seq_len, fractions)
        full = self.step_flops(self.config, self.layout.global_batch, seq_len, None)
        self.stats["tokens"] += tokens
        self.stats["flops"] += float(flops)
        self.stats["flops_full"] += float(full)
        self.stats["time"] += seconds
        mean = lambda name: sum(float(getattr(o, name).detach()) for o in outs) / len(outs)  # noqa: E731
        record = {"step": self.step, "loss": mean("loss"), "rtd_loss": mean("rtd_loss"),
                  "rtd_accuracy": mean("rtd_accuracy"), "exit_fraction": 1.0 - fractions.mean().item(),
                  "lr": result["lr"], "tokens_per_s": tokens / seconds, "flops": float(flops),
                  "flops_saved": 1.0 - float(flops) / float(full), "flops_per_s": float(flops) / seconds}
        if outs[0].mlm_loss is not None:
            record["mlm_loss"] = mean("mlm_loss")
        if result["grad_norm"] is not None:
            record["grad_norm"] = float(result["grad_norm"])
        return record

    def _write_metrics(self, record: dict) -> None:
        if self.dist.main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def evaluate(self) -> dict:
        """The held-out evaluation (training.evaluation.evaluate) of the model as it is now."""
        return evaluate(self.model, self.heldout, self.device, self.yardstick)

    # -- the run
    def run(self) -> Summary:
        cfg = self.cfg
        bar = None
        if cfg.progress and self.dist.main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True)
        last_saved = self.step
        if self.step == 0:  # where the run starts on the fixed yardstick, for the summary's "before -> after"
            start = self.evaluate()
            self._write_metrics({"step": 0, "eval": start})
            self.stats["start_eval"] = {k: start[k] for k in START_METRICS if k in start}
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
                    self._write_metrics({"step": self.step, "eval": self.evaluate()})
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
        heldout = self.evaluate()
        self._write_metrics({"step": self.step, "eval": heldout})
        checkpoint = self.save()
        export = cfg.export_hf and self.dist.main
        with full_parameters(self.model):  # under FSDP every rank gathers the weights, rank 0 writes them
            hf_dir = export_hf(unwrap(self.model), self.tokenizer, self.out / "hf") if export else None
        summary = Summary.from_stats(self.stats, steps=self.step, heldout=heldout, checkpoint=str(checkpoint),
                                     hf_export=str(hf_dir) if hf_dir else None,
                                     hf_skipped="pip install transformers" if cfg.export_hf else "--no-export",
                                     metrics=str(self.out / "metrics.jsonl"))
        self.log(summary.text())
        return summary
