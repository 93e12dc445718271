"""`electra-fast pretrain`: pre-train ELECTRA on local text, in one process or many under `torchrun`.

pretrain(cfg) sets the run up (training.setup: process group, output directory, tokenizer, data, checkpoint),
trains it (training.loop.Trainer) and leaves the process group. The parts live in electra_fast/training/.

Step s (0-based) of a run with W ranks, A accumulation micro-steps and B rows per micro-batch:
    shard m = rank * A + k for micro-step k (data.Layout); rows: data.PackedBatches / StreamingCorpus
    offset  = s * 2^20 + m      the Philox stream of that micro-batch (the model uses 2*offset, 2*offset+1)
    torch.manual_seed(seed ^ (offset * 0x9E3779B97F4A7C15 mod 2^63)) before it, so dropout is a function of
        (seed, s, m) as well: nothing random depends on the process layout or on resuming (training.seeds)
    loss_m  = model(batch_m, seed=seed, offset=offset, step=s).loss / A, summed by backward; DDP averages
        over ranks, so every step's gradient is the mean over W * A shards of B rows
    clip the global gradient norm, AdamW step (β 0.9/0.999, ε 1e-6, weight decay 0.01 on matrices only:
        biases and LayerNorm weights are excluded), lr = peak * min((s+1)/warmup, (S-s)/(S-warmup)).
Hence one process with A = k computes exactly what k ranks with A = 1 compute, and a resumed run
computes exactly what an uninterrupted one does (tests/test_train.py checks both). 2^20 bounds W*A.

Held-out evaluation runs the model in eval mode on the first `eval_sequences` held-out rows with
seed EVAL_SEED and offsets EVAL_OFFSET + i, so the masked positions (and a statistical generator's
replacements) are the same in every evaluation of every run; it reports RTD loss, accuracy and AUC
(training.evaluation).

Output directory: checkpoint.safetensors (model with its sampler state, AdamW state as tensors; step, data
position, scheduler, config, arguments and the tokenizer's and data's digests as JSON metadata, with a sha256
checked on load; written to a temp file and renamed; see training.checkpoint), checkpoint.previous.safetensors
(the one before, which a resume falls back to when the latest is unreadable), tokenizer.json, config.json,
metrics.jsonl (one JSON object per logged step / evaluation), hf/ (the final discriminator and its tokenizer
in Hugging Face format, when transformers is installed). --resume continues the run the checkpoint records
(training.record).
"""
from __future__ import annotations

import sys
from typing import Callable

import torch

from .training.config import TrainConfig
from .training.loop import Trainer
from .training.setup import setup_run
from .training.summary import Summary


def default_model(config, sampler):
    """ElectraForPretraining: the model `electra-fast pretrain` trains."""
    from .models import ElectraForPretraining

    return ElectraForPretraining(config, sampler=sampler)


def default_step_flops(config, batch, seq_len, active_fractions=None):
    """FLOPs of one training step by electra_fast.flops (with early exit when `active_fractions` is given)."""
    from .flops import train_step_flops

    fractions = None if active_fractions is None else [float(f) for f in active_fractions]
    return train_step_flops(config, batch, seq_len, active_fractions=fractions).total


def pretrain(cfg: TrainConfig, *, model_factory: Callable = default_model, step_flops: Callable = default_step_flops,
             log: Callable[[str], None] = print) -> Summary:
    """Train as `cfg` says; the same call under torchrun trains with DDP (or FSDP)."""
    trainer = Trainer(setup_run(cfg, log=log), model_factory=model_factory, step_flops=step_flops, log=log)
    try:
        return trainer.run()
    finally:
        if trainer.dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        sys.stdout.flush()
