"""The Hugging Face export of a trained model: discriminator weights and config, and the tokenizer beside them."""
from __future__ import annotations

import pathlib
from typing import Optional

from torch import nn


def export_hf(model: nn.Module, tokenizer, target: pathlib.Path) -> Optional[pathlib.Path]:
    """Save the discriminator of `model` (an ElectraForPretraining) with `tokenizer` under `target`, as
    transformers' ElectraForPreTraining loads it; None (nothing written) when transformers is not installed."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        return None
    from ..hf import to_hf

    discriminator, _generator = to_hf(model)
    discriminator.save_pretrained(str(target))
    tokenizer.save(str(target / "tokenizer.json"))
    if type(tokenizer.model).__name__ == "WordPiece":
        tokenizer.model.save(str(target))  # vocab.txt, for ElectraTokenizer
    return target
