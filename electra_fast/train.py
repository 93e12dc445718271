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

SHARD_BITS = 20
EVAL_SEED = 0x5EED
EVAL_OFFSET = 2**61


@dataclasses.dataclass
class TrainConfig:
    """Everything `electra-fast pretrain` takes; None means the preset's value."""
    preset: str = "tiny"
    corpus: Optional[list] = None            # None: the bundled corpus
    tokenizer: Optional[str] = None          # a tokenizer.json / vocab.txt; None: train one on the corpus
    vocab_size: int = 8192                   # of the tokenizer trained on the corpus
    steps: int = 300
    batch_size: Optional[int] = None         # rows per rank per micro-step
    seq_len: Optional[int] = None
    lr: Optional[float] = None
    warmup_steps: Optional[int] = None       # None: min(preset's, steps // 10)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    accumulation: int = 1
    generator: str = "network"
    early_exit_threshold: Optional[float] = None
    seed: int = 0
    output: str = "electra-pretrain"
    resume: bool = False
    eval_every: int = 0                      # 0: only at the end
    eval_sequences: int = 64
    save_every: int = 0                      # 0: only at the end (and on Ctrl-C)
    log_every: int = 10
    heldout_fraction: float = 0.02
    streaming: bool = False
    cache_dir: Optional[str] = None
    compile: bool = False
    fsdp: bool = False
    device: Optional[str] = None             # None: cuda:<local rank> if available, else cpu
    progress: bool = True
    export_hf: bool = True
    model_overrides: dict = dataclasses.field(default_factory=dict)  # extra ElectraConfig fields

    def validate(self) -> None:
        positive = ("steps", "vocab_size", "accumulation", "eval_sequences", "log_every")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("batch_size", "seq_len", "warmup_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < (0 if name == "warmup_steps" else 1)):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.seed < 2**62:
            raise ValueError(f"seed must be in [0, 2^62), got {self.seed}")
        if self.eval_every < 0 or self.save_every < 0:
            raise ValueError("eval_every and save_every must be >= 0")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 turns clipping off), got {self.grad_clip}")


# ------------------------------------------------------------------------------------- small pieces
def step_offset(step: int, shard: int) -> int:
    """The Philox offset of micro-batch `shard` of step `step` (distinct for every pair)."""
    if not 0 <= shard < 2**SHARD_BITS:
        raise ValueError(f"shard must be in [0, 2^{SHARD_BITS}), got {shard}")
    return (step << SHARD_BITS) | shard


def dropout_seed(seed: int, offset: int) -> int:
    return (seed ^ (offset * 0x9E3779B97F4A7C15)) % 2**63


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total` (ELECTRA's schedule)."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices and embeddings; none on biases and LayerNorm (1-D) parameters."""
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of `scores` for binary `labels` (ties share their average rank); nan if
    one class is absent."""
    scores, labels = scores.double().flatten(), labels.bool().flatten()
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    avg_rank = (ends - (counts.double() - 1) / 2)[inverse]  # 1-based average rank of each sorted score
    pos_rank_sum = avg_rank[labels[order]].sum().item()
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


# ---------------------------------------------------------------------------------------- distributed
@dataclasses.dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def init_distributed(device: Optional[str]) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: then join the process group (nccl on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    dist = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        if use_cuda:
            torch.cuda.set_device(dist.local_rank)
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return dist


# ------------------------------------------------------------------------------------------- trainer
@dataclasses.dataclass
class Summary:
    steps: int
    tokens_per_s: float
    flops_saved_fraction: Optional[float]
    heldout: dict
    checkpoint: str
    hf_export: Optional[str]
    metrics: str

    def text(self) -> str:
        saved = "n/a" if self.flops_saved_fraction is None else f"{100 * self.flops_saved_fraction:.1f}%"
        lines = [
            f"steps                      {self.steps}",
            f"tokens/s                   {self.tokens_per_s:,.0f}",
            f"FLOPs saved by early exit  {saved}",
            f"held-out RTD accuracy      {self.heldout.get('rtd_accuracy', float('nan')):.4f}  "
            f"(loss {self.heldout.get('rtd_loss', float('nan')):.4f}, AUC {self.heldout.get('rtd_auc', float('nan')):.4f})",
            f"checkpoint                 {self.checkpoint}",
            f"Hugging Face export        {self.hf_export or 'skipped (pip install transformers)'}",
            f"metrics                    {self.metrics}",
        ]
        return "\n".join(lines)


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
        self.log = log if self.dist.main else (lambda *_: None)
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
        self.raw_model = self.model
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
        self.model = self._wrap(self.model)
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

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.dist.world > 1:
            if self.cfg.fsdp:
                from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

                model = FSDP(model, device_id=self.device if self.device.type == "cuda" else None,
                             use_orig_params=True)
            else:
                model = nn.parallel.DistributedDataParallel(
                    model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile:
            model = torch.compile(model)
        return model

    # -- checkpoints
    def _state(self) -> tuple[dict, dict]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_state_dict(self._unwrapped(), self.optimizer, options=opts)

    def _unwrapped(self) -> nn.Module:
        model = getattr(self.model, "_orig_mod", self.model)
        return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model

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
        sampler = getattr(self.raw_model, "sampler", None)
        counts = getattr(sampler, "counts", None)
        if before is None or counts is None or self.dist.world == 1:
            return
        delta = counts - before
        torch.distributed.all_reduce(delta)
        counts.copy_(before + delta)

    def train_step(self) -> dict:
        self.model.train()
        sampler_counts = getattr(getattr(self.raw_model, "sampler", None), "counts", None)
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

    @torch.no_grad()
    def evaluate(self) -> dict:
        self.model.eval()
        loss_sum = correct = tokens = 0.0
        scores, labels = [], []
        for i, batch in enumerate(self.heldout):
            batch = {k: t.to(self.device) for k, t in batch.items()}
            out = self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                             seed=EVAL_SEED, offset=EVAL_OFFSET + i, step=None)
            real = batch["attention_mask"].bool()
            n = real.sum().item()
            loss_sum += out.rtd_loss.float().item() * n
            correct += out.rtd_accuracy.float().item() * n
            tokens += n
            scores.append(out.disc_logits.float()[real].cpu())
            labels.append(out.is_replaced[real].cpu())
        return {"rtd_loss": loss_sum / tokens, "rtd_accuracy": correct / tokens,
                "rtd_auc": roc_auc(torch.cat(scores), torch.cat(labels)), "tokens": int(tokens)}

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
                    heldout = self.evaluate()
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
        heldout = self.evaluate()
        self._write_metrics({"step": self.step, "eval": heldout})
        checkpoint = self.save()
        hf_dir = self._export_hf() if cfg.export_hf else None
        full = self.stats["flops_full"]
        saved = (1.0 - self.stats["flops"] / full) if full else None
        summary = Summary(steps=self.step, tokens_per_s=self.stats["tokens"] / max(self.stats["time"], 1e-9),
                          flops_saved_fraction=saved, heldout=heldout, checkpoint=str(checkpoint),
                          hf_export=str(hf_dir) if hf_dir else None, metrics=str(self.out / "metrics.jsonl"))
        self.log(summary.text())
        return summary

    def _export_hf(self) -> Optional[pathlib.Path]:
        """The final discriminator in Hugging Face format (and the tokenizer beside it) under <output>/hf."""
        try:
            import transformers  # noqa: F401
        except ImportError:
            return None
        if not self.dist.main:
            return None
        from .hf import to_hf

        target = self.out / "hf"
        discriminator, _generator = to_hf(self._unwrapped())
        discriminator.save_pretrained(str(target))
        self.tokenizer.save(str(target / "tokenizer.json"))
        if type(self.tokenizer.model).__name__ == "WordPiece":
            self.tokenizer.model.save(str(target))  # vocab.txt, for ElectraTokenizer
        return target


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
