"""Hugging Face transformers interop (optional extra: `pip install electra_fast[hf]`).

    to_hf(model)                      -> (ElectraForPreTraining, ElectraForMaskedLM or None)
    from_hf(discriminator, generator) -> ElectraForPretraining
    apply_kernels(model=None)         -> put rtd_loss / generator_head into transformers' ELECTRA classes

Conversion is a renaming of tensors plus two rules: our fused q/k/v projection is split into
transformers' query/key/value, and under GDES the discriminator's word embedding is materialised as
E_G + E_delta. With a network generator the shared embedding block is copied into both models (the
generator's output embedding is tied to its input embedding, as in transformers). The transformers configs
record the special token ids (pad/cls/sep/mask_token_id), and from_hf takes them from there or from the
tokenizer it is given; it raises rather than guess them. It also raises, naming the field or tensor, for a
model that is not an ELECTRA discriminator (generator), for overrides that contradict the weights, and for
weights whose shapes do not match their config.

apply_kernels patches, on one model (every ELECTRA pre-training module inside it) or on the classes:
  ElectraForPreTraining.forward(..., labels)  loss = rtd_loss(logits, labels, attention_mask)
                                              (transformers: BCE over tokens with attention_mask == 1)
  ElectraForMaskedLM.forward(..., labels)     loss = generator_head over the positions with
                                              labels != -100 (transformers: cross-entropy on every
                                              position's [V] logits, ignore_index -100); the [B,T,V]
                                              logits are not built: output.logits is None, and
                                              output.samples [M] holds one exact draw per predicted
                                              position from softmax(logits) (row-major order, positions
                                              in output.sample_positions [M] flat b*T + t), so a
                                              pre-training loop corrupts its input without the logits.
Without labels both classes behave as before.
"""
from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from . import functional as EF
from .models.config import ElectraConfig
from .models.pretraining import ElectraForPretraining

_LAYER_NAMES = {  # ours -> transformers, inside encoder.layers.{i} / electra.encoder.layer.{i}
    "attn_out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
_EMBEDDING_NAMES = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
                    "LayerNorm.weight", "LayerNorm.bias")


def _transformers():
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("electra_fast.hf needs transformers: pip install 'electra_fast[hf]'") from err
    return transformers


def hf_configs(config: ElectraConfig):
    """(discriminator, generator or None) transformers.ElectraConfig of the same architecture, recording the
    special token ids (cls/sep/mask_token_id are extra fields to transformers; from_hf reads them back)."""
    t = _transformers()
    common = dict(vocab_size=config.vocab_size, embedding_size=config.embedding_size, hidden_act="gelu",
                  hidden_dropout_prob=config.hidden_dropout_prob,
                  attention_probs_dropout_prob=config.attention_probs_dropout_prob,
                  max_position_embeddings=config.max_position_embeddings, type_vocab_size=config.type_vocab_size,
                  initializer_range=config.initializer_range, layer_norm_eps=config.layer_norm_eps,
                  pad_token_id=config.pad_token_id, cls_token_id=config.cls_token_id,
                  sep_token_id=config.sep_token_id, mask_token_id=config.mask_token_id)
    disc = t.ElectraConfig(hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
                           num_attention_heads=config.num_attention_heads,
                           intermediate_size=config.intermediate_size, **common)
    gen = None
    if config.generator == "network":
        gen = t.ElectraConfig(hidden_size=config.gen_hidden_size, num_hidden_layers=config.gen_num_hidden_layers,
                              num_attention_heads=config.gen_num_attention_heads,
                              intermediate_size=config.gen_intermediate_size, **common)
    return disc, gen


def _encoder_to_hf(encoder, num_layers: int) -> Dict[str, torch.Tensor]:
    out = {}
    if encoder.embeddings_project is not None:
        out["electra.embeddings_project.weight"] = encoder.embeddings_project.weight
        out["electra.embeddings_project.bias"] = encoder.embeddings_project.bias
    for i in range(num_layers):
        layer = encoder.layers[i]
        prefix = f"electra.encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = getattr(layer.qkv, kind).chunk(3, dim=0)
            out[prefix + f"attention.self.query.{kind}"] = q
            out[prefix + f"attention.self.key.{kind}"] = k
            out[prefix + f"attention.self.value.{kind}"] = v
            for ours, theirs in _LAYER_NAMES.items():
                out[prefix + f"{theirs}.{kind}"] = getattr(getattr(layer, ours), kind)
    return out


def _tensor(state: Dict[str, torch.Tensor], key: str, shape, who: str) -> torch.Tensor:
    """state[key], checked to exist and to have `shape` (what the model built from the config holds)."""
    if key not in state:
        raise ValueError(f"the {who} has no weight {key!r}: not a transformers ELECTRA {who}?")
    if tuple(state[key].shape) != tuple(shape):
        raise ValueError(f"the {who}'s {key} has shape {tuple(state[key].shape)}, but its config (with the "
                         f"overrides) makes it {tuple(shape)}")
    return state[key]


def _copy(target: torch.Tensor, state: Dict[str, torch.Tensor], key: str, who: str) -> None:
    with torch.no_grad():
        target.copy_(_tensor(state, key, target.shape, who))


def _encoder_from_hf(state: Dict[str, torch.Tensor], encoder, num_layers: int, who: str) -> None:
    if encoder.embeddings_project is not None:
        _copy(encoder.embeddings_project.weight, state, "electra.embeddings_project.weight", who)
        _copy(encoder.embeddings_project.bias, state, "electra.embeddings_project.bias", who)
    for i in range(num_layers):
        layer = encoder.layers[i]
        prefix = f"electra.encoder.layer.{i}."
        for kind in ("weight", "bias"):
            fused = getattr(layer.qkv, kind)
            part = (fused.shape[0] // 3, *fused.shape[1:])
            qkv = [_tensor(state, prefix + f"attention.self.{n}.{kind}", part, who) for n in ("query", "key", "value")]
            with torch.no_grad():
                fused.copy_(torch.cat(qkv, dim=0))
            for ours, theirs in _LAYER_NAMES.items():
                _copy(getattr(getattr(layer, ours), kind), state, prefix + f"{theirs}.{kind}", who)


def _embeddings_to_hf(embeddings, word_delta: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {f"electra.embeddings.{name}": tensor for name, tensor in
           zip(_EMBEDDING_NAMES, (embeddings.word_embeddings.weight, embeddings.position_embeddings.weight,
                                  embeddings.token_type_embeddings.weight, embeddings.LayerNorm.weight,
                                  embeddings.LayerNorm.bias))}
    if word_delta is not None:
        out["electra.embeddings.word_embeddings.weight"] = embeddings.word_embeddings.weight + word_delta
    return out


def _embeddings_from_hf(state: Dict[str, torch.Tensor], embeddings, who: str) -> None:
    targets = (embeddings.word_embeddings.weight, embeddings.position_embeddings.weight,
               embeddings.token_type_embeddings.weight, embeddings.LayerNorm.weight, embeddings.LayerNorm.bias)
    for name, target in zip(_EMBEDDING_NAMES, targets):
        _copy(target, state, f"electra.embeddings.{name}", who)


def _load_prefixed(module, state: Dict[str, torch.Tensor], prefix: str, who: str) -> None:
    """Every parameter `name` of `module` from state[prefix + name]."""
    for name, target in module.state_dict(keep_vars=True).items():
        _copy(target, state, prefix + name, who)


def _load_exact(module, state: Dict[str, torch.Tensor]) -> None:
    state = {k: v.detach().clone() for k, v in state.items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    # position_ids / token_type_ids are transformers' buffers, not weights
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise RuntimeError(f"conversion to transformers left missing={missing} unexpected={unexpected}")


def to_hf(model: ElectraForPretraining):
    """(transformers.ElectraForPreTraining, transformers.ElectraForMaskedLM or None) with our weights.

    Both come back in eval mode on the model's device, in float32. The discriminator's exit heads (if
    any, unshared) have no transformers counterpart and are dropped.
    """
    t = _transformers()
    cfg = model.config
    disc_cfg, gen_cfg = hf_configs(cfg)
    device = next(model.parameters()).device
    d = model.discriminator
    state = {**_embeddings_to_hf(d.embeddings, d.word_delta), **_encoder_to_hf(d.encoder, cfg.num_hidden_layers),
             "discriminator_predictions.dense.weight": d.head.dense.weight,
             "discriminator_predictions.dense.bias": d.head.dense.bias,
             "discriminator_predictions.dense_prediction.weight": d.head.dense_prediction.weight,
             "discriminator_predictions.dense_prediction.bias": d.head.dense_prediction.bias}
    hf_disc = t.ElectraForPreTraining(disc_cfg).to(device)
    _load_exact(hf_disc, state)
    hf_gen = None
    if model.generator is not None:
        g = model.generator
        state = {**_embeddings_to_hf(g.embeddings, None), **_encoder_to_hf(g.encoder, cfg.gen_num_hidden_layers),
                 "generator_predictions.dense.weight": g.prediction.dense.weight,
                 "generator_predictions.dense.bias": g.prediction.dense.bias,
                 "generator_predictions.LayerNorm.weight": g.prediction.LayerNorm.weight,
                 "generator_predictions.LayerNorm.bias": g.prediction.LayerNorm.bias,
                 "generator_lm_head.weight": g.embeddings.word_embeddings.weight,
                 "generator_lm_head.bias": g.output_bias}
        hf_gen = t.ElectraForMaskedLM(gen_cfg).to(device)
        _load_exact(hf_gen, state)
        hf_gen.eval()
    return hf_disc.eval(), hf_gen


def _same_embeddings(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> bool:
    keys = [f"electra.embeddings.{name}" for name in _EMBEDDING_NAMES]
    return all(a[k].shape == b[k].shape and torch.equal(a[k].cpu(), b[k].cpu()) for k in keys)


_ARCHITECTURE = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size", "generator_hidden_size",
                 "generator_num_hidden_layers", "generator_num_attention_heads", "generator_intermediate_size")
_SPECIAL_IDS = {"pad_token_id": "[PAD]", "cls_token_id": "[CLS]", "sep_token_id": "[SEP]", "mask_token_id": "[MASK]"}


def from_hf(discriminator, generator=None, *, tokenizer=None, embedding_sharing: Optional[str] = None,
            **config_overrides) -> ElectraForPretraining:
    """An ElectraForPretraining holding the weights of transformers' ElectraForPreTraining (+ ElectraForMaskedLM).

    tokenizer: the models' tokenizer (a transformers tokenizer, or a tokenizers.Tokenizer with BERT's special
    tokens); the special token ids come from config_overrides, else the discriminator's config (to_hf and
    `electra-fast pretrain`'s export record them), else this tokenizer. An id known from none of them, or a
    config and a tokenizer that disagree, is a ValueError: a wrong [MASK] id would silently mask with an
    ordinary token.
    embedding_sharing: "tied" or "none"; by default "tied" when the two models' embedding blocks are
    equal (as in checkpoints trained with sharing), else "none". Without a generator, a new one of
    the config's default size is initialised over the discriminator's embeddings. config_overrides
    set any other ElectraConfig field (objective, early exit, dropout, ...); the architecture (sizes, layers,
    vocabulary, position and type tables) is the weights', and an override that contradicts it is a ValueError.
    """
    t = _transformers()
    _check_model(discriminator, t.ElectraForPreTraining, "discriminator", t.ElectraForMaskedLM)
    if generator is not None:
        _check_model(generator, t.ElectraForMaskedLM, "generator", t.ElectraForPreTraining)
    hd = discriminator.config
    fields = dict(vocab_size=hd.vocab_size, embedding_size=hd.embedding_size, hidden_size=hd.hidden_size,
                  num_hidden_layers=hd.num_hidden_layers, num_attention_heads=hd.num_attention_heads,
                  intermediate_size=hd.intermediate_size, hidden_dropout_prob=hd.hidden_dropout_prob,
                  attention_probs_dropout_prob=hd.attention_probs_dropout_prob,
                  max_position_embeddings=hd.max_position_embeddings, type_vocab_size=hd.type_vocab_size,
                  layer_norm_eps=hd.layer_norm_eps, initializer_range=hd.initializer_range)
    if hd.hidden_act != "gelu":
        raise ValueError(f"only gelu ELECTRA models convert, got hidden_act={hd.hidden_act!r}")
    d_state = discriminator.state_dict()
    g_state = generator.state_dict() if generator is not None else None
    if generator is not None:
        hg = generator.config
        if (hg.vocab_size, hg.embedding_size) != (hd.vocab_size, hd.embedding_size):
            raise ValueError("generator and discriminator must share vocab_size and embedding_size")
        fields.update(generator_hidden_size=hg.hidden_size, generator_num_hidden_layers=hg.num_hidden_layers,
                      generator_num_attention_heads=hg.num_attention_heads,
                      generator_intermediate_size=hg.intermediate_size)
        if embedding_sharing is None:
            embedding_sharing = "tied" if _same_embeddings(d_state, g_state) else "none"
    embedding_sharing = embedding_sharing or "tied"
    if embedding_sharing not in ("tied", "none"):
        raise ValueError(f"embedding_sharing must be 'tied' or 'none' for a conversion, got {embedding_sharing!r}")
    for name in _ARCHITECTURE:
        if name in fields and name in config_overrides and config_overrides[name] != fields[name]:
            raise ValueError(f"{name}={config_overrides[name]!r} contradicts the weights, whose config has "
                             f"{fields[name]!r}; the architecture comes from the models (drop the override)")
    fields.update(_special_ids(hd, tokenizer, config_overrides))
    config = ElectraConfig(**{**fields, "embedding_sharing": embedding_sharing, **config_overrides})
    model = ElectraForPretraining(config)
    d = model.discriminator
    _embeddings_from_hf(d_state, d.embeddings, "discriminator")
    _encoder_from_hf(d_state, d.encoder, config.num_hidden_layers, "discriminator")
    _load_prefixed(d.head.dense, d_state, "discriminator_predictions.dense.", "discriminator")
    _load_prefixed(d.head.dense_prediction, d_state, "discriminator_predictions.dense_prediction.", "discriminator")
    if g_state is not None and model.generator is not None:
        g = model.generator
        if embedding_sharing == "none":
            _embeddings_from_hf(g_state, g.embeddings, "generator")
        _encoder_from_hf(g_state, g.encoder, config.gen_num_hidden_layers, "generator")
        _load_prefixed(g.prediction.dense, g_state, "generator_predictions.dense.", "generator")
        _load_prefixed(g.prediction.LayerNorm, g_state, "generator_predictions.LayerNorm.", "generator")
        _copy(g.output_bias, g_state, "generator_lm_head.bias", "generator")
    return model.to(next(discriminator.parameters()).device)


def _check_model(model, expected: type, role: str, other: type) -> None:
    if isinstance(model, expected):
        return
    hint = " (the arguments go from_hf(discriminator, generator))" if isinstance(model, other) else ""
    raise TypeError(f"{role} must be transformers' {expected.__name__}, got {type(model).__name__}{hint}")


def _special_ids(config, tokenizer, overrides: dict) -> Dict[str, int]:
    """The special token ids not in `overrides`: the config's (recorded by to_hf), else the tokenizer's."""
    told = _tokenizer_ids(tokenizer) if tokenizer is not None else {}
    ids, unknown = {}, []
    for name in _SPECIAL_IDS:
        if name in overrides:
            continue
        recorded, said = getattr(config, name, None), told.get(name)
        if recorded is not None and said is not None and recorded != said:
            raise ValueError(f"{name}: the discriminator's config records {recorded} but the tokenizer has {said}; "
                             f"pass {name}= to say which")
        value = recorded if recorded is not None else said
        if value is None:
            unknown.append(name)
        else:
            ids[name] = int(value)
    if unknown:
        where = "the discriminator's config does not record them" + ("" if tokenizer is None else
                                                                     " and the tokenizer has no such tokens")
        raise ValueError(f"from_hf cannot know {', '.join(unknown)}: {where}; pass tokenizer= (e.g. "
                         f"AutoTokenizer.from_pretrained(model_dir)) or the ids themselves "
                         f"({', '.join(f'{n}=...' for n in unknown)})")
    return ids


def _tokenizer_ids(tokenizer) -> Dict[str, Optional[int]]:
    if all(hasattr(tokenizer, name) for name in _SPECIAL_IDS):  # a transformers tokenizer
        return {name: getattr(tokenizer, name) for name in _SPECIAL_IDS}
    if hasattr(tokenizer, "token_to_id"):  # a tokenizers.Tokenizer
        return {name: tokenizer.token_to_id(token) for name, token in _SPECIAL_IDS.items()}
    raise TypeError(f"tokenizer must be a transformers tokenizer or a tokenizers.Tokenizer, got "
                    f"{type(tokenizer).__name__}")


# apply_kernels -----------------------------------------------------------------------------------

def _fused_pretraining_forward(self, input_ids=None, attention_mask=None, token_type_ids=None,
                               position_ids=None, inputs_embeds=None, labels=None, **kwargs):
    """transformers' ElectraForPreTraining.forward with the loss from electra_fast's fused rtd_loss."""
    from transformers.models.electra.modeling_electra import ElectraForPreTrainingOutput

    kwargs.pop("return_dict", None)
    out = self.electra(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                       position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
    logits = self.discriminator_predictions(out[0])
    loss = None
    if labels is not None:
        _check_labels(labels, input_ids, inputs_embeds)
        loss = EF.rtd_loss(logits, labels, attention_mask)
    return ElectraForPreTrainingOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                       attentions=out.attentions)


def _fused_masked_lm_forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                             inputs_embeds=None, labels=None, *, seed: Optional[int] = None, offset: int = 0,
                             **kwargs):
    """transformers' ElectraForMaskedLM.forward; with labels, the loss (and samples) from generator_head."""
    if labels is None:
        return self._electra_fast_original_forward(input_ids, attention_mask=attention_mask,
                                                   token_type_ids=token_type_ids, position_ids=position_ids,
                                                   inputs_embeds=inputs_embeds, **kwargs)
    _check_labels(labels, input_ids, inputs_embeds)
    kwargs.pop("return_dict", None)
    out = self.electra(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                       position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
    predicted = labels != -100
    packed = EF.gather_tokens(out[0], predicted)
    targets = labels.reshape(-1)[packed.index]
    if seed is None:  # a fresh stream from torch's CPU generator (no device synchronisation)
        seed = int(torch.randint(0, 2**62, (1,)).item())
    head = self.generator_lm_head
    loss, samples = EF.generator_head(self.generator_predictions(packed.tokens), head.weight, head.bias, targets,
                                      seed=seed, offset=offset)
    return _fused_output_class()(loss=loss, logits=None, hidden_states=out.hidden_states, attentions=out.attentions,
                               samples=samples, sample_positions=packed.index)


def _check_labels(labels, input_ids, inputs_embeds) -> None:
    """labels must be a [B, T] tensor, one per input token (as transformers' own losses take them)."""
    shape = tuple(input_ids.shape) if input_ids is not None else tuple(inputs_embeds.shape[:2])
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != shape:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must have the shape of input_ids {shape} (one label per token), got {got}")


@functools.lru_cache(maxsize=None)
def _fused_output_class():
    from transformers.modeling_outputs import MaskedLMOutput

    @dataclass
    class FusedMaskedLMOutput(MaskedLMOutput):
        """MaskedLMOutput without logits, plus samples [M] and sample_positions [M] (see electra_fast.hf)."""

        samples: Optional[torch.Tensor] = None
        sample_positions: Optional[torch.Tensor] = None

    return FusedMaskedLMOutput


def apply_kernels(model=None) -> Optional[Tuple[str, ...]]:
    """Make transformers' ELECTRA pre-training use electra_fast's fused kernels, in one call.

    model: patch every ElectraForPreTraining / ElectraForMaskedLM module inside `model` (itself
    included) and return the names of the patched modules; None: patch the two classes, so every
    instance (existing or future) uses the kernels. The loss and its gradients equal transformers'.
    """
    t = _transformers()
    disc_cls, gen_cls = t.ElectraForPreTraining, t.ElectraForMaskedLM
    if model is None:
        disc_cls.forward = _fused_pretraining_forward
        if not hasattr(gen_cls, "_electra_fast_original_forward"):
            gen_cls._electra_fast_original_forward = gen_cls.forward
        gen_cls.forward = _fused_masked_lm_forward
        return None
    patched = []
    for name, module in model.named_modules():
        if isinstance(module, disc_cls):
            module.forward = types.MethodType(_fused_pretraining_forward, module)
        elif isinstance(module, gen_cls):
            original = getattr(gen_cls, "_electra_fast_original_forward", gen_cls.forward)
            module._electra_fast_original_forward = types.MethodType(original, module)
            module.forward = types.MethodType(_fused_masked_lm_forward, module)
        else:
            continue
        patched.append(name)
    if not patched:
        raise ValueError(f"{type(model).__name__} contains no transformers ElectraForPreTraining or "
                         "ElectraForMaskedLM module to patch")
    return tuple(patched)
