"""Sets a pre-training run up from a TrainConfig, and returns it as plain objects (RunSetup).

In order: join the process group (torchrun), pick the device, check the output directory (writable; holds a
checkpoint exactly when resuming; temp files of a killed save removed), read the checkpoint to resume from (or
the previous one when the latest is unreadable) and take the run's config from its record (training.record),
get the tokenizer (rank 0 trains or loads it and saves it as <output>/tokenizer.json; every rank loads that
file), build the model config, pack the corpus (rank 0 first, so the others read its cache), check that a
resumed run reads the tokenizer and training data it was started with (their digests, the run's identity),
count the train split's tokens (for a statistical generator's sampler and the evaluation yardstick's unigram
corrupter), and open the training rows at the checkpoint's data position, the held-out batches and the fixed
yardstick built from them. Nothing here builds or trains a model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import pathlib
from typing import Callable, Optional, Union

import torch
from torch import nn

from .. import data as D
from .. import evaluation
from . import record
from .checkpoint import CHECKPOINT, PREVIOUS, TrainingCheckpoint, load_latest, remove_orphans
from .config import TrainConfig
from .distributed import Dist, init_distributed, resolve_device
from .seeds import SHARD_BITS


@dataclasses.dataclass
class RunSetup:
    """A run ready to train."""
    cfg: TrainConfig
    dist: Dist
    device: torch.device
    out: pathlib.Path                                         # the output directory, absolute
    tokenizer: object                                         # a tokenizers.Tokenizer
    config: object                                            # the model's ElectraConfig
    layout: D.Layout
    warmup: int                                               # warm-up steps of the learning-rate schedule
    sampler: Optional[nn.Module]                              # statistical generator's sampler, on `device`
    batches: Union[D.PackedBatches, D.StreamingCorpus]        # training rows from the data position on
    heldout: list                                             # held-out batches for evaluation
    yardstick: object                                         # electra_fast.evaluation.HeldoutSets of them
    checkpoint: Optional[TrainingCheckpoint]                  # what a resumed run restores
    identity: dict                                            # what the run reads (CheckpointMeta.identity)


def setup_run(cfg: TrainConfig, *, log: Callable[[str], None] = print) -> RunSetup:
    """Everything `cfg` asks for except the model; `log` prints notes (on rank 0). On resume the returned
    RunSetup.cfg is the checkpoint's run with the caller's changeable fields (training.record)."""
    cfg.validate()
    dist = init_distributed(cfg.device)
    log = dist.main_only(log)
    device = resolve_device(cfg.device, dist.local_rank)
    out = pathlib.Path(cfg.output).expanduser().resolve()
    if dist.main:
        check_output_dir(out, cfg.resume)
        for name in remove_orphans(out):
            log(f"note: removed {name}, the temp file of a checkpoint save that was killed")
    dist.barrier()

    given = record.set_by_caller(cfg)
    checkpoint = load_latest(out, main=dist.main, log=log) if cfg.resume else None
    if checkpoint is not None:
        cfg = record.resumed_config(cfg, checkpoint.meta, dist.world)
    corpus_paths = D.resolve_corpus(cfg.corpus or [D.bundled_corpus()])
    tokenizer = _tokenizer(cfg, dist, corpus_paths, out / "tokenizer.json", resuming=checkpoint is not None,
                           given="tokenizer" in given)
    ids = D.SpecialIds.from_tokenizer(tokenizer)
    config = build_config(cfg, ids, tokenizer.get_vocab_size(), checkpoint.meta.config if checkpoint else None)
    layout = D.Layout(config.batch_size, dist.world, cfg.accumulation)
    if layout.world * layout.accum > 2**SHARD_BITS:
        raise ValueError(f"world size x accumulation must be <= 2^{SHARD_BITS}")

    packed = _packed(cfg, dist, corpus_paths, tokenizer, config.seq_len, log)
    identity = run_identity(tokenizer, packed)
    if checkpoint is not None:
        record.check_identity(checkpoint.meta.identity, identity, given)
    counts = D.token_counts(packed.train, config.vocab_size)
    sampler = build_sampler(config.generator, ids, counts)
    if checkpoint is not None:
        warmup, data_start = checkpoint.meta.warmup, checkpoint.meta.data_position
    else:
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(config.warmup_steps, cfg.steps // 10)
        data_start = 0
    if cfg.streaming:
        batches = D.StreamingCorpus(corpus_paths, tokenizer, config.seq_len, layout, dist.rank,
                                    heldout_fraction=cfg.heldout_fraction, start=data_start)
    else:
        batches = D.PackedBatches(packed, layout, dist.rank, seed=cfg.seed, start=data_start)
    heldout = D.heldout_batches(packed, config.batch_size, cfg.eval_sequences)
    yardstick = evaluation.heldout_sets(torch.cat([b["input_ids"] for b in heldout]), ids, counts,
                                        cache_dir=cfg.cache_dir)
    return RunSetup(cfg=cfg, dist=dist, device=device, out=out, tokenizer=tokenizer, config=config, layout=layout,
                    warmup=warmup, sampler=sampler.to(device) if sampler is not None else None, batches=batches,
                    heldout=heldout, yardstick=yardstick, checkpoint=checkpoint, identity=identity)


def run_identity(tokenizer, packed: D.PackedCorpus) -> dict:
    """What a run reads, by content: the tokenizer's and the packed train split's sha256 (and its length)."""
    return {"tokenizer_sha256": hashlib.sha256(tokenizer.to_str().encode()).hexdigest(),
            "train_sha256": D.split_digest(packed.train), "train_sequences": len(packed.train)}


def check_output_dir(out: pathlib.Path, resume: bool) -> None:
    """Create `out` and check that it is writable, and that it holds a checkpoint (the latest or the previous
    one) exactly when resuming."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output directory {str(out)!r} is a file; choose a directory for --output")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"output directory {str(out)!r} is not writable: {e.strerror or e}") from None
    held = (out / CHECKPOINT).exists() or (out / PREVIOUS).exists()
    if not resume and held:
        raise FileExistsError(f"output directory {str(out)!r} already holds a checkpoint; pass --resume to "
                              f"continue it, or choose another --output (nothing was overwritten)")
    if resume and not held:
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {str(out)!r}")


def _tokenizer(cfg: TrainConfig, dist: Dist, corpus_paths: list, saved: pathlib.Path, *, resuming: bool,
               given: bool):
    """The run's tokenizer. A new run's is trained (or read from --tokenizer) by rank 0 and saved to `saved`,
    which every rank loads; a resumed run reads `saved`, or the --tokenizer it was `given` (checked against the
    record later, so `saved` is left as it is)."""
    if resuming and given:
        return D.load_tokenizer(cfg.tokenizer)
    if resuming and saved.is_file():
        return D.load_tokenizer(saved)
    if dist.main:
        tok = D.tokenizer_for(corpus_paths, cfg.tokenizer, vocab_size=cfg.vocab_size, cache_dir=cfg.cache_dir)
        tok.save(str(saved))
    dist.barrier()  # training a tokenizer is not deterministic: every rank uses rank 0's
    return D.load_tokenizer(saved)


def _packed(cfg: TrainConfig, dist: Dist, corpus_paths: list, tokenizer, seq_len: int,
            log: Callable[[str], None]) -> D.PackedCorpus:
    if dist.main:
        packed = D.prepare(corpus_paths, tokenizer, seq_len, heldout_fraction=cfg.heldout_fraction,
                           cache_dir=cfg.cache_dir)
    dist.barrier()
    if not dist.main:
        packed = D.prepare(corpus_paths, tokenizer, seq_len, heldout_fraction=cfg.heldout_fraction,
                           cache_dir=cfg.cache_dir)
    if len(packed.heldout) == 0:
        raise ValueError(_empty_heldout(cfg.heldout_fraction, packed.meta["stats"]["documents"]))
    skipped = packed.meta["stats"]["skipped_lines"]
    if skipped:
        log(f"note: {skipped} corpus lines were not UTF-8 (or not JSON) and were skipped")
    return packed


def _empty_heldout(fraction: float, documents: int) -> str:
    """What to do when no document is held out: one is when documents * fraction >= 1 (data.is_heldout)."""
    said = f"the held-out split is empty (--heldout-fraction {fraction} of {documents} document(s))"
    if documents < 2:
        return (f"{said}: held-out evaluation needs a document of its own besides the training text; give a corpus "
                f"of at least 2 documents (one per line, or blank-line separated)")
    least = math.ceil(1e4 / documents) / 1e4  # the smallest 4-decimal fraction with documents * f >= 1
    return f"{said}: pass --heldout-fraction {least:g} or more (at least 1/{documents})"


def build_config(cfg: TrainConfig, ids: D.SpecialIds, vocab_size: int, saved: Optional[dict] = None):
    """The model's ElectraConfig: the preset with the run's overrides, or `saved` (a resumed run's) as it is."""
    from ..models import EarlyExitConfig, ElectraConfig

    if saved is not None:
        return ElectraConfig.from_dict(saved)
    overrides = dict(vocab_size=vocab_size, pad_token_id=ids.pad, cls_token_id=ids.cls, sep_token_id=ids.sep,
                     mask_token_id=ids.mask, generator=cfg.generator)
    if cfg.early_exit:
        keep = cfg.early_exit_keep
        overrides["early_exit"] = EarlyExitConfig(
            keep=keep[0] if keep is not None and len(keep) == 1 else keep, threshold=cfg.early_exit_threshold,
            exit_layers=cfg.early_exit_layers, warmup_steps=cfg.early_exit_warmup_steps)
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


def build_sampler(kind: str, ids: D.SpecialIds, counts: torch.Tensor):
    """The statistical generator's sampler for `kind`, from the train split's token `counts`."""
    if kind == "network":
        return None
    from .. import samplers

    exclude = [ids.pad, ids.unk, ids.cls, ids.sep, ids.mask]
    if kind == "uniform":
        return samplers.UniformSampler(counts.numel(), exclude_ids=exclude)
    if kind == "unigram":
        return samplers.UnigramSampler.from_counts(counts, exclude_ids=exclude)
    return samplers.ClusterSampler.from_frequencies(counts, num_clusters=100)
