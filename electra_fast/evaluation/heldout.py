"""The fixed held-out yardstick: every model is scored on exactly the same corrupted tokens.

A run's own generator makes its own task (a weak generator makes replacements easy to spot), so scores
taken with it do not compare across runs. Here the corruption is fixed once per (held-out ids, seed):
    positions  chosen as mask_tokens chooses them (ELECTRA's 15% of real, non-special tokens; the same
               Philox selection words), identical for every corrupter;
    tokens     drawn by a fixed corrupter, never by the model under test:
                 "uniform"  any non-special token, uniformly (RTS: easy, most draws are rare tokens)
                 "unigram"  the train split's token frequencies (hard: replacements are common tokens)
    scored     every real token except [CLS]/[SEP] (about 85% of them are originals).
A discriminator is scored by ROC-AUC and by the recall of replaced tokens at a 5% false-positive rate
(electra_fast.evaluation.metrics); accuracy at logit 0 is reported next to the majority-class rate, which
it must beat to mean anything. A generator is scored by MLM accuracy (argmax) and cross-entropy on fixed
masked positions (mask_tokens with the same seed).

Shapes: the held-out ids are [N, T] int64 (packed sequences, [PAD] at the end); every tensor of a set has
that shape. Sets are cached by content under `<cache>/eval_sets/`, so "the same tokens" holds across
processes and runs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import Dict, Optional, Sequence

import torch

from .. import data
from .. import functional as EF
from .. import samplers
from ..data import SpecialIds, collate, default_cache_dir
from .metrics import recall_at_fpr, roc_auc

CORRUPTERS = ("uniform", "unigram")
FORMAT = 1
_STREAM_OFFSET = 0  # the one Philox stream (seed, 0) of a set: positions and replacement draws


@dataclasses.dataclass
class CorruptedSet:
    """One corrupter's fixed RTD task: corrupted ids and labels over the held-out rows, [N, T] each."""

    corrupter: str
    input_ids: torch.Tensor  # corrupted ids
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    is_replaced: torch.Tensor  # bool
    scored: torch.Tensor  # bool: the tokens every model is scored on


@dataclasses.dataclass
class MaskedSet:
    """Fixed MLM positions over the held-out rows: masked ids, is_masked and the originals, [N, T] each."""

    masked_ids: torch.Tensor
    is_masked: torch.Tensor
    original_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor


@dataclasses.dataclass
class HeldoutSets:
    """The yardstick of one (held-out ids, seed): a CorruptedSet per corrupter and one MaskedSet."""

    vocab_size: int
    special_ids: SpecialIds
    seed: int
    rtd: Dict[str, CorruptedSet]
    mlm: MaskedSet

    @property
    def num_sequences(self) -> int:
        return self.mlm.original_ids.shape[0]


def _digest(*tensors: torch.Tensor, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for t in tensors:
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def build_heldout_sets(heldout_ids: torch.Tensor, special_ids: SpecialIds, train_counts: torch.Tensor, *,
                       seed: int = 0, mask_prob: float = 0.15) -> HeldoutSets:
    """The yardstick for held-out rows `heldout_ids` [N, T] int64 and the train split's token counts [V]
    (the unigram corrupter's weights; V = the vocabulary size)."""
    if not isinstance(heldout_ids, torch.Tensor) or heldout_ids.dim() != 2 or heldout_ids.dtype != torch.int64:
        raise ValueError("heldout_ids must be an [N, T] int64 tensor of token ids, got "
                         f"{getattr(heldout_ids, 'dtype', type(heldout_ids).__name__)} "
                         f"{tuple(getattr(heldout_ids, 'shape', ()))}")
    if heldout_ids.shape[0] == 0 or heldout_ids.shape[1] == 0:
        raise ValueError(f"the held-out split is empty (shape {tuple(heldout_ids.shape)}): the yardstick needs "
                         "at least one held-out sequence; give the corpus more documents or a larger held-out "
                         "fraction")
    vocab = train_counts.numel()
    top = int(heldout_ids.max())
    if top >= vocab or int(heldout_ids.min()) < 0:
        raise ValueError(f"heldout_ids must lie in [0, {vocab}) (the vocabulary of train_counts), found {top}")
    heldout_ids = heldout_ids.cpu()
    batch = collate(heldout_ids, special_ids)
    specials = (special_ids.cls, special_ids.sep)
    excluded = (special_ids.pad, special_ids.unk, special_ids.cls, special_ids.sep, special_ids.mask)
    corrupters = {"uniform": samplers.UniformSampler(vocab, exclude_ids=excluded),
                  "unigram": samplers.UnigramSampler.from_counts(train_counts.cpu(), exclude_ids=excluded)}
    real = batch["attention_mask"].bool()
    scored = real & (heldout_ids != special_ids.cls) & (heldout_ids != special_ids.sep)
    rtd = {}
    for name, sampler in corrupters.items():
        corrupted, is_replaced, _ = EF.statistical_replace(heldout_ids, batch["attention_mask"], sampler,
                                                           mask_prob=mask_prob, special_token_ids=specials,
                                                           seed=seed, offset=_STREAM_OFFSET)
        rtd[name] = CorruptedSet(name, corrupted, batch["attention_mask"], batch["token_type_ids"], is_replaced,
                                 scored)
    masked_ids, is_masked = EF.mask_tokens(heldout_ids, batch["attention_mask"], mask_prob=mask_prob,
                                           mask_token_id=special_ids.mask, special_token_ids=specials, seed=seed,
                                           offset=_STREAM_OFFSET)
    mlm = MaskedSet(masked_ids, is_masked, heldout_ids, batch["attention_mask"], batch["token_type_ids"])
    return HeldoutSets(vocab, special_ids, seed, rtd, mlm)


def heldout_sets(heldout_ids: torch.Tensor, special_ids: SpecialIds, train_counts: torch.Tensor, *,
                 seed: int = 0, cache_dir: Optional[str | os.PathLike] = None) -> HeldoutSets:
    """build_heldout_sets, cached by content (ids, counts, special ids, seed) under <cache>/eval_sets/."""
    key = _digest(heldout_ids, train_counts,
                  extra=f"{FORMAT}:{seed}:{sorted(dataclasses.asdict(special_ids).items())}")
    path = pathlib.Path(cache_dir or default_cache_dir()) / "eval_sets" / f"{key}.pt"
    if path.is_file():
        try:
            return _from_state(torch.load(path, weights_only=True))
        except Exception:  # a damaged cache file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    sets = build_heldout_sets(heldout_ids, special_ids, train_counts, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
    torch.save(_to_state(sets), tmp)
    os.replace(tmp, path)
    return sets


def corpus_heldout_sets(tokenizer, paths: Optional[Sequence[str | os.PathLike]] = None, *, seq_len: int = 128,
                        max_sequences: Optional[int] = 64, heldout_fraction: float = 0.02, seed: int = 0,
                        cache_dir: Optional[str | os.PathLike] = None) -> HeldoutSets:
    """The yardstick of a corpus (default: the bundled one) as `electra-fast pretrain` builds it: the corpus
    packed with `tokenizer` (a `tokenizers.Tokenizer`) to seq_len, the first `max_sequences` held-out rows
    (None: all; pretrain's --eval-sequences), the train split's token counts for the unigram corrupter."""
    packed = data.prepare(list(paths or [data.bundled_corpus()]), tokenizer, seq_len,
                          heldout_fraction=heldout_fraction, cache_dir=cache_dir)
    n = len(packed.heldout) if max_sequences is None else min(max_sequences, len(packed.heldout))
    return heldout_sets(data.rows(packed.heldout, range(n)), packed.ids,
                        data.token_counts(packed.train, tokenizer.get_vocab_size()), seed=seed, cache_dir=cache_dir)


def _to_state(sets: HeldoutSets) -> dict:
    return {"vocab_size": sets.vocab_size, "special_ids": dataclasses.asdict(sets.special_ids), "seed": sets.seed,
            "rtd": {k: dataclasses.asdict(v) for k, v in sets.rtd.items()}, "mlm": dataclasses.asdict(sets.mlm)}


def _from_state(state: dict) -> HeldoutSets:
    return HeldoutSets(state["vocab_size"], SpecialIds(**state["special_ids"]), state["seed"],
                       {k: CorruptedSet(**v) for k, v in state["rtd"].items()}, MaskedSet(**state["mlm"]))


# ------------------------------------------------------------------------------------------------ scoring
def _model_config(module: torch.nn.Module):
    config = getattr(module, "config", None)
    if config is None:
        raise TypeError(f"expected an electra_fast model (ElectraForPretraining or its .discriminator), got "
                        f"{type(module).__name__}")
    return config


def check_compatible(module: torch.nn.Module, sets: HeldoutSets) -> None:
    """ValueError naming the mismatch when `module`'s vocabulary or special ids differ from the sets'."""
    config = _model_config(module)
    if config.vocab_size != sets.vocab_size:
        raise ValueError(f"the model's vocabulary ({config.vocab_size} tokens) differs from the held-out set's "
                         f"({sets.vocab_size}): score a model with the sets built from its own tokenizer")
    ids = sets.special_ids
    for field, theirs in (("cls_token_id", ids.cls), ("sep_token_id", ids.sep), ("mask_token_id", ids.mask),
                          ("pad_token_id", ids.pad)):
        ours = getattr(config, field)
        if ours != theirs:
            raise ValueError(f"the model's {field} is {ours} but the held-out set's tokenizer has {theirs}: "
                             "score a model with the sets built from its own tokenizer")


def _batches(n: int, batch: int):
    return (slice(s, min(s + batch, n)) for s in range(0, n, batch))


@torch.no_grad()
def score_discriminator(discriminator: torch.nn.Module, rtd_set: CorruptedSet, *, batch: int = 64,
                        fpr: float = 0.05) -> Dict[str, float]:
    """Scores of `discriminator` (model.discriminator: (input_ids, attention_mask, token_type_ids) ->
    (hidden, logits [B, T])) at full depth on the set's scored tokens: auc, recall_at_fpr, accuracy
    (logit > 0 means replaced) and majority_rate (the accuracy of always answering "original")."""
    device = next(discriminator.parameters()).device
    was_training = discriminator.training
    discriminator.eval()
    scores, labels = [], []
    try:
        for rows in _batches(rtd_set.input_ids.shape[0], batch):
            _, logits = discriminator(rtd_set.input_ids[rows].to(device), rtd_set.attention_mask[rows].to(device),
                                      rtd_set.token_type_ids[rows].to(device))
            keep = rtd_set.scored[rows]
            scores.append(logits.float().cpu()[keep])
            labels.append(rtd_set.is_replaced[rows][keep])
    finally:
        discriminator.train(was_training)
    x, y = torch.cat(scores), torch.cat(labels)
    return {"auc": roc_auc(x, y), "recall_at_fpr": recall_at_fpr(x, y, fpr),
            "accuracy": ((x > 0) == y).double().mean().item(), "majority_rate": 1.0 - y.double().mean().item()}


@torch.no_grad()
def score_generator(model: torch.nn.Module, mlm_set: MaskedSet, *, batch: int = 64) -> Dict[str, float]:
    """Held-out MLM accuracy (argmax == original) and mean cross-entropy over the fixed masked positions
    of `model` (an ElectraForPretraining with a network generator)."""
    generator = getattr(model, "generator", None)
    if generator is None:
        raise ValueError("score_generator needs a model with a network generator (config.generator='network')")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = loss_sum = 0.0
    count = 0
    try:
        for rows in _batches(mlm_set.masked_ids.shape[0], batch):
            keep = mlm_set.is_masked[rows].to(device)
            # logits at the masked positions only: [M, V], not the [B, T, V] of every position
            picked = generator.mlm_logits(mlm_set.masked_ids[rows].to(device), mlm_set.attention_mask[rows].to(device),
                                          mlm_set.token_type_ids[rows].to(device), positions=keep).float()
            targets = mlm_set.original_ids[rows].to(device)[keep]
            correct += (picked.argmax(-1) == targets).sum().item()
            loss_sum += torch.nn.functional.cross_entropy(picked, targets, reduction="sum").item()
            count += targets.numel()
    finally:
        model.train(was_training)
    return {"mlm_accuracy": correct / max(count, 1), "mlm_loss": loss_sum / max(count, 1)}


def evaluate(model: torch.nn.Module, sets: HeldoutSets, *, batch: int = 64) -> Dict[str, float]:
    """Every yardstick number of `model` (ElectraForPretraining, or a bare discriminator) in one flat dict:
    auc_<corrupter>, recall5_<corrupter>, accuracy_<corrupter>, majority_<corrupter> for each corrupter, and
    mlm_accuracy / mlm_loss when the model has a network generator."""
    check_compatible(model, sets)
    discriminator = getattr(model, "discriminator", model)
    out: Dict[str, float] = {}
    for name, rtd_set in sets.rtd.items():
        s = score_discriminator(discriminator, rtd_set, batch=batch)
        out.update({f"auc_{name}": s["auc"], f"recall5_{name}": s["recall_at_fpr"],
                    f"accuracy_{name}": s["accuracy"], f"majority_{name}": s["majority_rate"]})
    if getattr(model, "generator", None) is not None:
        out.update(score_generator(model, sets.mlm, batch=batch))
    return out
