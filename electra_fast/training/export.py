"""The Hugging Face export of a trained model: the discriminator's weights and config, and its tokenizer in
transformers' format, so that the folder alone loads with AutoTokenizer.from_pretrained and
ElectraForPreTraining.from_pretrained (and electra_fast.hf.from_hf takes the special token ids from it)."""
from __future__ import annotations

import pathlib
from typing import Optional

from torch import nn

from ..data import SPECIAL_TOKENS, SpecialIds


def export_hf(model: nn.Module, tokenizer, target: pathlib.Path) -> Optional[pathlib.Path]:
    """Save the discriminator of `model` (an ElectraForPretraining) with `tokenizer` (a tokenizers.Tokenizer)
    under `target`, as transformers loads them; None (nothing written) when transformers is not installed.
    The config records pad/cls/sep/mask_token_id (electra_fast.hf.hf_configs)."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        return None
    from ..hf import to_hf

    discriminator, _generator = to_hf(model)
    discriminator.save_pretrained(str(target))
    hf_tokenizer(tokenizer).save_pretrained(str(target))
    if type(tokenizer.model).__name__ == "WordPiece":
        tokenizer.model.save(str(target))  # vocab.txt, for the slow ElectraTokenizer
    return target


def hf_tokenizer(tokenizer):
    """transformers' fast tokenizer around `tokenizer`, which adds [CLS] ... [SEP] (and [SEP] between the two
    texts of a pair, with token types 0 and 1) as ELECTRA's pre-training packed them; the special tokens are
    named, so that it pads and masks with the run's ids."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    ids = SpecialIds.from_tokenizer(tokenizer)
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids.cls), ("[SEP]", ids.sep)])
    pad, unk, cls, sep, mask = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=copy, pad_token=pad, unk_token=unk, cls_token=cls,
                                   sep_token=sep, mask_token=mask, model_input_names=["input_ids",
                                                                                       "token_type_ids",
                                                                                       "attention_mask"])
