"""ElectraForPretraining: generator + discriminator wired through the fused ops.

One step on ids [B,T] (attention_mask [B,T], 1 = real token):
    network generator:
        masked_ids, is_masked = mask_tokens(ids)                       stream (seed, 2*offset)
        mlm_loss, samples     = generator_head(generator(masked_ids)[is_masked], E_word, b, ids[is_masked])
                                                                       stream (seed, 2*offset + 1)
        corrupted             = ids with the samples at the masked positions (no gradient)
    statistical generator ("uniform" | "unigram" | "cluster"):
        corrupted, is_replaced, is_masked = statistical_replace(ids, sampler)   stream (seed, 2*offset)
    is_replaced = corrupted != ids (a sampled original is "real")
    logits      = discriminator(corrupted)            (with early exit: each token's from its exit head;
                  a random budget selection draws its priorities from stream (seed, 2*offset + 1),
                  counters B*T .. 2*B*T - 1, which the generator's sampling never reaches)
    rtd_loss    = mean over real tokens of BCE(logits, is_replaced)      [CLS]/[SEP] included
    exit_loss   = mean over exit heads of the head's RTD loss on the tokens it scored (deep supervision)
    loss        = gen_weight * mlm_loss + disc_weight * (rtd_loss + exit_loss_weight * exit_loss)
The sample carries no gradient, so no RTD gradient reaches the generator's own weights; the shared
embeddings get both ("tied"), or the RTD gradient goes to E_delta only ("gdes": E_D = sg(E_G) + E_delta).
`offset` must be distinct per step and per rank (the caller's job); the model splits it in two streams.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .. import functional as EF
from .. import random
from .._validation import MAX_SEED, check_seed
from .config import ElectraConfig
from .discriminator import Discriminator
from .encoder import Embeddings, init_weights
from .generator import Generator


@dataclass
class ElectraPretrainingOutput:
    """Losses are 0-dim tensors (mlm_loss and generator_accuracy are None with a statistical generator,
    exit_loss None without early exit); metrics are 0-dim float32 tensors computed without a host sync.

    active_fractions [L]: the fraction of real tokens each discriminator layer ran on (all 1 without exits).
    disc_logits [B,T], is_replaced [B,T] bool, is_masked [B,T] bool, corrupted_ids [B,T], attention_mask [B,T].
    """

    loss: torch.Tensor
    mlm_loss: Optional[torch.Tensor]
    rtd_loss: torch.Tensor
    exit_loss: Optional[torch.Tensor]
    rtd_accuracy: torch.Tensor
    rtd_precision: torch.Tensor
    rtd_recall: torch.Tensor
    generator_accuracy: Optional[torch.Tensor]
    replaced_fraction: torch.Tensor
    active_fractions: torch.Tensor
    disc_logits: torch.Tensor
    is_replaced: torch.Tensor
    is_masked: torch.Tensor
    corrupted_ids: torch.Tensor
    attention_mask: torch.Tensor


class ElectraForPretraining(nn.Module):
    """ELECTRA pre-training: `model(input_ids, attention_mask, *, seed, offset, step)` -> ElectraPretrainingOutput.

    sampler: an `electra_fast.samplers` object for config.generator in ("uniform", "unigram", "cluster")
    (built by the caller, e.g. from corpus counts); a ClusterSampler's counts are updated from the
    discriminator's predictions on every training-mode forward. `model.discriminator` works alone:
    `hidden, logits = model.discriminator(input_ids, attention_mask)`.
    """

    def __init__(self, config: ElectraConfig, sampler=None):
        super().__init__()
        config.validate()
        self.config = config
        statistical = config.generator != "network"
        if statistical and sampler is None:
            raise ValueError(f"generator={config.generator!r} needs a sampler from electra_fast.samplers")
        if not statistical and sampler is not None:
            raise ValueError("a sampler is only used with a statistical generator (uniform, unigram, cluster)")
        self.sampler = sampler
        shared = Embeddings(config)
        gdes = not statistical and config.embedding_sharing == "gdes"
        self.word_delta = nn.Parameter(torch.zeros(config.vocab_size, config.embedding_size)) if gdes else None
        own_embeddings = statistical or config.embedding_sharing == "none"
        self.generator = None if statistical else Generator(config, shared)
        self.discriminator = Discriminator(config, None if own_embeddings else shared, self.word_delta)
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, *, seed: int = 0, offset: int = 0,
                step: Optional[int] = None) -> ElectraPretrainingOutput:
        """step: the training step, for the early-exit warm-up (None counts as past it)."""
        cfg = self.config
        check_seed(seed, offset)
        if offset >= MAX_SEED // 2:
            raise ValueError(f"offset must be < 2^62 (the model uses streams 2*offset and 2*offset+1), got {offset}")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        elif attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                             f"got {tuple(attention_mask.shape)}")
        specials = (cfg.cls_token_id, cfg.sep_token_id)

        mlm_loss = generator_accuracy = None
        if self.generator is not None:
            masked_ids, is_masked = EF.mask_tokens(
                input_ids, attention_mask, mask_prob=cfg.mask_prob, mask_token_id=cfg.mask_token_id,
                special_token_ids=specials, mask_fraction=cfg.mask_fraction, seed=seed, offset=2 * offset)
            gen = self.generator(masked_ids, attention_mask, input_ids, is_masked, token_type_ids,
                                 temperature=cfg.temperature, seed=seed, offset=2 * offset + 1)
            mlm_loss = gen.loss
            corrupted = input_ids.reshape(-1).scatter(0, gen.index, gen.samples.to(input_ids.dtype))
            corrupted = corrupted.view_as(input_ids)
            generator_accuracy = ((gen.samples == gen.targets).sum().to(torch.float32)
                                  / max(gen.samples.numel(), 1))
        else:
            self._sampler_to(input_ids.device)
            corrupted, _, is_masked = EF.statistical_replace(
                input_ids, attention_mask, self.sampler, mask_prob=cfg.mask_prob, special_token_ids=specials,
                seed=seed, offset=2 * offset)
        is_replaced = corrupted != input_ids

        early_exit = cfg.early_exit
        scores = None
        if early_exit is not None and early_exit.policy == "budget" and early_exit.selection == "random":
            n = input_ids.numel()
            scores = random.uniform(n, seed=seed, offset=2 * offset + 1, start=n,
                                    device=input_ids.device).view_as(input_ids)
        disc = self.discriminator.run(corrupted, attention_mask, token_type_ids, exits=early_exit is not None,
                                      supervise=early_exit is not None, step=step, scores=scores)
        rtd_loss = EF.rtd_loss(disc.logits, is_replaced, attention_mask)
        disc_total = rtd_loss
        exit_loss = None
        if early_exit is not None:
            exit_loss = self._exit_loss(disc.exit_records, is_replaced)
            disc_total = rtd_loss + early_exit.exit_loss_weight * exit_loss
        loss = cfg.disc_weight * disc_total
        if mlm_loss is not None:
            loss = loss + cfg.gen_weight * mlm_loss

        metrics = EF.rtd_metrics(disc.logits, is_replaced, attention_mask)
        if self.training and hasattr(self.sampler, "update"):
            with torch.no_grad():
                self.sampler.update(input_ids, corrupted, is_replaced, disc.logits.detach() > 0)
        return ElectraPretrainingOutput(
            loss=loss, mlm_loss=mlm_loss, rtd_loss=rtd_loss, exit_loss=exit_loss,
            rtd_accuracy=metrics.accuracy, rtd_precision=metrics.precision, rtd_recall=metrics.recall,
            generator_accuracy=generator_accuracy, replaced_fraction=metrics.replaced_fraction,
            active_fractions=disc.active_fractions, disc_logits=disc.logits, is_replaced=is_replaced,
            is_masked=is_masked, corrupted_ids=corrupted, attention_mask=attention_mask)

    @staticmethod
    def _exit_loss(records, is_replaced: torch.Tensor) -> torch.Tensor:
        """Mean over exit heads of each head's RTD loss (mean over the tokens it scored)."""
        labels = torch.cat([is_replaced.reshape(-1), is_replaced.new_zeros(1)])
        losses = [EF.rtd_loss(r.logits, labels[r.positions], r.mask) for r in records]
        return torch.stack(losses).mean()

    def get_extra_state(self):
        """The statistical sampler's state (e.g. C-RTS counts) travels with the model's state_dict."""
        return None if self.sampler is None else {"sampler": self.sampler.state_dict()}

    def set_extra_state(self, state) -> None:
        if state is not None and self.sampler is not None:
            self.sampler.load_state_dict(state["sampler"])

    def _sampler_to(self, device: torch.device) -> None:
        if getattr(self.sampler, "device", device) != device:
            self.sampler = self.sampler.to(device)
