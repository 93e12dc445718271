"""Stand-ins for the model and the FLOP count, and a small corpus, for the training tests (fast on 2 CPU cores)."""
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from electra_fast import random as ef_random

SENTENCES = ["The river flows past the old mill toward the sea.", "Stars form in clouds of gas and dust.",
             "A philosopher asks what can be known and how.", "The state capital lies on the eastern plain."]


def write_corpus(path):
    """80 documents of 1-5 sentences each at `path`."""
    lines = [" ".join(SENTENCES[(i + k) % 4] for k in range(1 + i % 5)) for i in range(80)]
    path.write_text("\n".join(lines) + "\n")
    return path


class StandInDiscriminator(nn.Module):
    """(input_ids, attention_mask, token_type_ids) -> (hidden [B,T,16], logits [B,T]), as the model's."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, 16)
        self.norm = nn.LayerNorm(16)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(16, 1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        hidden = self.drop(self.norm(self.embed(input_ids)))
        return hidden, self.head(hidden).squeeze(-1)


@dataclasses.dataclass
class StandInOutput:
    """The output fields the training loop reads. A dataclass, as the model's is: FSDP finds the tensors of
    a dataclass output (not of an arbitrary object) to hook the unsharding of its backward onto."""
    loss: torch.Tensor
    rtd_loss: torch.Tensor
    mlm_loss: None
    rtd_accuracy: torch.Tensor
    active_fractions: torch.Tensor
    disc_logits: torch.Tensor
    is_replaced: torch.Tensor
    attention_mask: torch.Tensor


class StandIn(nn.Module):
    """A small module with ElectraForPretraining's call signature, output fields and `.discriminator`:
    Philox-driven corruption (so offsets matter), dropout (so the torch seed matters), LayerNorm, bias,
    embedding."""

    def __init__(self, config, sampler=None):
        super().__init__()
        self.config, self.sampler = config, sampler
        self.discriminator = StandInDiscriminator(config)

    def forward(self, input_ids, attention_mask, token_type_ids=None, *, seed=0, offset=0, step=None):
        u = ef_random.uniform(input_ids.numel(), seed=seed, offset=2 * offset).view_as(input_ids)
        real = attention_mask.bool()
        replaced = (u < 0.15) & real
        corrupted = torch.where(replaced, (input_ids + 7) % self.config.vocab_size, input_ids)
        _, logits = self.discriminator(corrupted, attention_mask)
        rtd = F.binary_cross_entropy_with_logits(logits[real], replaced[real].float())
        accuracy = ((logits[real] > 0) == replaced[real]).float().mean()
        return StandInOutput(loss=50 * rtd, rtd_loss=rtd, mlm_loss=None, rtd_accuracy=accuracy,
                             active_fractions=torch.tensor([1.0, 0.5]), disc_logits=logits, is_replaced=replaced,
                             attention_mask=attention_mask)


def fake_flops(config, batch, seq_len, active_fractions=None):
    per_layer = 1000.0 * batch * seq_len
    if active_fractions is None:
        return 2 * per_layer
    return per_layer * float(active_fractions.sum())
