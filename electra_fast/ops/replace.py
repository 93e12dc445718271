"""electra_fast::mask_tokens, ::sample_replace, ::statistical_fill: ELECTRA's corruption step.

    mask_tokens(input_ids [B,T], attention_mask [B,T]?) -> (masked_ids [B,T], is_masked [B,T] bool)
    sample_replace(logits [M,V], input_ids [B,T], is_masked [B,T]) -> (corrupted_ids [B,T], is_replaced [B,T])
    statistical_replace(input_ids, attention_mask, sampler) -> (corrupted_ids, is_replaced, is_masked)
The math and shapes are in electra_fast/reference/replace.py (the oracle).

Random numbers (the shared Philox stream, electra_fast/random.py, keyed by (seed, offset)):
  mask_tokens and statistical_replace: counter p = b*T + t (flat position),
    word 0: selection key; a row's k candidates with the smallest (word0 << 31 | t) are masked, i.e. a
            uniform k-subset, ties broken by position;
    word 1: mask_tokens: the position shows mask_token_id iff uniform(word1) < mask_fraction (fp32);
    word 2: statistical_replace: uniform that picks the replacement's cluster (fp64 inverse CDF);
    word 3: statistical_replace: the token inside that cluster, floor(word3 * size / 2^32).
  sample_replace: counter m = the masked row (row of `logits`), word 0: the uniform u of the row's
    inverse-CDF sample (csrc/include/electra_fast/sampling.h: w = exp((x - max) / T) in fp32, sums in fp64,
    id = min{j : sum_{i<=j} w_i >= u Z}); the same contract as the fused generator head's sample.
Every backend draws these words bit for bit, and the integer/fp64 decisions are exact, so the ids agree
across backends; the one exception is sample_replace's exp (libm, Sleef, CUDA and Triton differ by an
ulp or two), which moves a sample only when u*Z lies within ~1e-7 sqrt(V) gaps of a boundary (~1e-5 of
rows at V = 30522). Tests check identity at sizes where that never happens.

Errors and the one host synchronisation: sample_replace's kernels flag rows with NaN/+inf logits and
rows without a finite allowed logit (keeping the original token there) and count the masked positions,
into a small `status` tensor; with validate=True (default) the wrapper reads it, together with the
id range check, in ONE host sync and raises a ValueError. validate=False skips it (no sync; invalid
rows keep their original token). Under torch.compile the check is skipped as well.

Kernels: csrc/cpu/replace.cpp (row sampler in sampling.h), csrc/cuda/replace.cu (math in masking.h, sampling.cuh),
electra_fast/triton/replace.py. Tests: tests/ops/test_replace.py, tests/test_samplers.py.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from .._validation import check_same_device, check_seed, check_temperature, check_tensor
from ..reference import replace as reference
from . import _dispatch as dispatch

_ID_DTYPES = (torch.int32, torch.int64)
_MASK_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_LOGIT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _reference_mask_tokens(input_ids, attention_mask, special_ids, mask_prob, mask_token_id, mask_fraction, seed,
                           offset):
    return reference.mask_tokens(input_ids, attention_mask, mask_prob=mask_prob, mask_token_id=mask_token_id,
                                 special_token_ids=special_ids.tolist(), mask_fraction=mask_fraction, seed=seed,
                                 offset=offset)


MASK_TOKENS = dispatch.Op(
    "mask_tokens",
    kernel="mask_tokens(Tensor input_ids, Tensor? attention_mask, Tensor special_ids, float mask_prob, "
           "int mask_token_id, float mask_fraction, int seed, int offset) -> (Tensor, Tensor)",
    triton="replace.mask_tokens",
    reference=_reference_mask_tokens,
)


@torch.library.custom_op("electra_fast::mask_tokens", mutates_args=())
def mask_tokens_op(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor], special_ids: torch.Tensor,
                   mask_prob: float, mask_token_id: int, mask_fraction: float, seed: int,
                   offset: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """input_ids [B,T] int32/int64 contiguous, attention_mask bool [B,T] or None, special_ids int64 [S]."""
    return dispatch.run(MASK_TOKENS, input_ids.device, input_ids.dtype, input_ids, attention_mask, special_ids,
                        mask_prob, mask_token_id, mask_fraction, seed, offset)


@mask_tokens_op.register_fake
def _(input_ids, attention_mask, special_ids, mask_prob, mask_token_id, mask_fraction, seed, offset):
    return torch.empty_like(input_ids), torch.empty_like(input_ids, dtype=torch.bool)


def _reference_sample_replace(logits, input_ids, is_masked, temperature, disallow_original, seed, offset):
    return reference.sample_replace(logits, input_ids, is_masked, temperature=temperature,
                                    disallow_original=disallow_original, seed=seed, offset=offset)


SAMPLE_REPLACE = dispatch.Op(
    "sample_replace",
    kernel="sample_replace(Tensor logits, Tensor input_ids, Tensor is_masked, float temperature, "
           "bool disallow_original, int seed, int offset) -> (Tensor, Tensor, Tensor)",
    triton="replace.sample_replace",
    reference=_reference_sample_replace,
    reference_dtypes=(torch.float64,),
)


@torch.library.custom_op("electra_fast::sample_replace", mutates_args=())
def sample_replace_op(logits: torch.Tensor, input_ids: torch.Tensor, is_masked: torch.Tensor, temperature: float,
                      disallow_original: bool, seed: int,
                      offset: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(corrupted_ids, is_replaced, status int64 [3] = (#masked, #NaN/+inf rows, #rows with nothing to draw))."""
    return dispatch.run(SAMPLE_REPLACE, logits.device, logits.dtype, logits, input_ids, is_masked, temperature,
                        disallow_original, seed, offset)


@sample_replace_op.register_fake
def _(logits, input_ids, is_masked, temperature, disallow_original, seed, offset):
    return (torch.empty_like(input_ids), torch.empty_like(input_ids, dtype=torch.bool),
            logits.new_empty(3, dtype=torch.int64))


def _reference_statistical_fill(input_ids, is_masked, row_of_token, cdf, offsets, members, seed, offset):
    return reference.statistical_fill(input_ids, is_masked, row_of_token, cdf, offsets, members, seed=seed,
                                      offset=offset)


STATISTICAL_FILL = dispatch.Op(
    "statistical_fill",
    kernel="statistical_fill(Tensor input_ids, Tensor is_masked, Tensor row_of_token, Tensor cdf, Tensor offsets, "
           "Tensor members, int seed, int offset) -> (Tensor, Tensor)",
    triton="replace.statistical_fill",
    reference=_reference_statistical_fill,
)


@torch.library.custom_op("electra_fast::statistical_fill", mutates_args=())
def statistical_fill_op(input_ids: torch.Tensor, is_masked: torch.Tensor, row_of_token: torch.Tensor,
                        cdf: torch.Tensor, offsets: torch.Tensor, members: torch.Tensor, seed: int,
                        offset: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Replacements drawn from a sampler's tables (electra_fast.samplers.SamplerTables) at masked positions."""
    return dispatch.run(STATISTICAL_FILL, input_ids.device, input_ids.dtype, input_ids, is_masked, row_of_token,
                        cdf, offsets, members, seed, offset)


@statistical_fill_op.register_fake
def _(input_ids, is_masked, row_of_token, cdf, offsets, members, seed, offset):
    return torch.empty_like(input_ids), torch.empty_like(input_ids, dtype=torch.bool)


# --- argument checks -------------------------------------------------------------------------------


def _check_ids(input_ids: torch.Tensor) -> torch.Tensor:
    check_tensor(input_ids, "input_ids", dtypes=_ID_DTYPES, dim=2)
    return input_ids.contiguous()


def _check_mask(mask: Optional[torch.Tensor], name: str, input_ids: torch.Tensor) -> Optional[torch.Tensor]:
    if mask is None:
        return None
    check_tensor(mask, name, dtypes=_MASK_DTYPES)
    if mask.shape != input_ids.shape:
        raise ValueError(f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(mask.shape)}")
    check_same_device(mask, name, input_ids, "input_ids")
    return (mask if mask.dtype == torch.bool else mask != 0).contiguous()


def _check_fraction(value, name: str, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not ok:
        raise ValueError(f"{name} must be in {'(0, 1]' if low_open else '[0, 1]'}, got {value}")
    return value


def _check_token_ids(values, name: str) -> list:
    values = [values] if isinstance(values, int) else list(values)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise TypeError(f"{name} must hold non-negative Python ints, got {v!r}")
    return values


def _select(input_ids, attention_mask, mask_prob, mask_token_id, special_token_ids, mask_fraction, seed, offset):
    check_seed(seed, offset)
    ids = _check_ids(input_ids)
    mask = _check_mask(attention_mask, "attention_mask", ids)
    mask_prob = _check_fraction(mask_prob, "mask_prob", low_open=True)
    mask_fraction = _check_fraction(mask_fraction, "mask_fraction", low_open=False)
    specials = torch.tensor(_check_token_ids(special_token_ids, "special_token_ids"), dtype=torch.int64,
                            device=ids.device)
    return mask_tokens_op(ids, mask, specials, mask_prob, mask_token_id, mask_fraction, seed, offset)


def mask_tokens(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor], *, mask_prob: float = 0.15,
                mask_token_id: int, special_token_ids: Sequence[int] = (), mask_fraction: float = 0.85, seed: int,
                offset: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """ELECTRA's masking: per row k = max(1, round(n_real * mask_prob)) distinct positions, uniformly among
    real tokens that are neither special nor mask_token_id (rows without such a token mask nothing);
    of the chosen, a `mask_fraction` share shows mask_token_id, the others keep their token.

    Args:
        input_ids: [B, T] int32/int64. attention_mask: [B, T] (nonzero = real token) or None (all real).
        mask_token_id: the [MASK] id (never chosen itself). special_token_ids: ids never chosen ([CLS], [SEP]...).
        seed, offset: the Philox stream (see the module docstring for the words used).
    Returns:
        masked_ids [B, T] (input_ids' dtype), is_masked [B, T] bool (the generator's prediction targets).
    """
    if isinstance(mask_token_id, bool) or not isinstance(mask_token_id, int) or mask_token_id < 0:
        raise TypeError(f"mask_token_id must be a non-negative Python int, got {mask_token_id!r}")
    if isinstance(input_ids, torch.Tensor) and input_ids.dtype in _ID_DTYPES:
        largest = torch.iinfo(input_ids.dtype).max
        if mask_token_id > largest:  # it would be written wrapped, as another id
            raise ValueError(f"mask_token_id {mask_token_id} does not fit input_ids' dtype "
                             f"{str(input_ids.dtype).replace('torch.', '')} (at most {largest})")
    return _select(input_ids, attention_mask, mask_prob, mask_token_id, special_token_ids, mask_fraction, seed,
                   offset)


def _raise_on_status(counts, rows: int, vocab: int, logits: torch.Tensor, input_ids: torch.Tensor,
                     disallow_original: bool) -> None:
    """Turns the counts read in the one host sync into clear errors (the slow details only on failure)."""
    masked, non_finite, empty, bad_ids = counts
    if bad_ids:
        bad = input_ids[(input_ids < 0) | (input_ids >= vocab)]
        raise ValueError(f"input_ids must lie in [0, V) with V = logits.shape[1] = {vocab}; "
                         f"found {bad_ids} ids outside, e.g. {int(bad[0])}")
    if masked != rows:
        raise ValueError(f"logits must have one row per masked position: is_masked marks {masked} positions "
                         f"but logits has {rows} rows")
    if non_finite:
        row = int((torch.isnan(logits) | torch.isposinf(logits)).any(1).nonzero()[0])
        raise ValueError(f"logits contain NaN or +inf in {non_finite} rows (first: row {row}); "
                         "cannot sample from them")
    if empty:
        extra = ", apart from the original token that disallow_original excludes" if disallow_original else ""
        raise ValueError(f"{empty} rows of logits have no finite logit to sample from (all -inf{extra})")


def sample_replace(logits: torch.Tensor, input_ids: torch.Tensor, is_masked: torch.Tensor, *,
                   temperature: float = 1.0, seed: int, offset: int = 0, disallow_original: bool = False,
                   validate: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Replace every masked position by an exact sample from softmax(logits / temperature).

    Args:
        logits: [M, V] generator logits of the M masked positions, in row-major order of is_masked
            (what a generator head returns for hidden[is_masked]); float32/16, bfloat16 (float64 runs on
            the reference). Read once or twice; no [M, V] probability, noise or one-hot is made. No gradient.
        input_ids: [B, T] int32/int64 originals, in [0, V). is_masked: [B, T] (nonzero = masked).
        temperature: > 0, or 0 for argmax (first maximum).
        disallow_original: exclude each position's original token from its draw (ELECTRA's option).
        validate: raise ValueError for NaN/+inf logits, rows with nothing to draw, ids outside [0, V) and
            a row count that does not match is_masked, at the cost of ONE host sync (see module docstring).
            On every device these are host errors, never device asserts: with validate=False the kernels
            still read and write only inside the tensors (a masked id outside [0, V) is replaced by a sample
            that cannot exclude it).
    Returns:
        corrupted_ids [B, T] (input_ids' dtype), is_replaced = corrupted_ids != input_ids [B, T] bool
        (a sampled original is "real", as in ELECTRA).
    """
    check_seed(seed, offset)
    check_tensor(logits, "logits", dtypes=_LOGIT_DTYPES, dim=2)
    ids = _check_ids(input_ids)
    check_same_device(ids, "input_ids", logits, "logits")
    check_tensor(is_masked, "is_masked", dtypes=_MASK_DTYPES)
    mask = _check_mask(is_masked, "is_masked", ids)
    temperature = check_temperature(temperature)
    rows, vocab = logits.shape
    if vocab < 1:
        raise ValueError("logits must have at least one column (V >= 1)")
    x = logits.detach().contiguous()
    corrupted, is_replaced, status = sample_replace_op(x, ids, mask, temperature, bool(disallow_original), seed,
                                                       offset)
    if validate and not torch.compiler.is_compiling():
        bad_ids = ((ids < 0) | (ids >= vocab)).sum().reshape(1)
        counts = torch.cat([status, bad_ids.to(status.device)]).tolist()  # the one host sync
        _raise_on_status(counts, rows, vocab, x, ids, bool(disallow_original))
    return corrupted, is_replaced


def statistical_replace(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor], sampler, *,
                        mask_prob: float = 0.15, special_token_ids: Sequence[int] = (), seed: int, offset: int = 0,
                        validate: bool = True) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Corrupt a batch with a statistical generator (no network): positions are chosen as in mask_tokens
    (same k, same selection words), and each chosen position gets a token drawn by `sampler`.

    Args:
        input_ids: [B, T] int32/int64 in [0, sampler.vocab_size). attention_mask: [B, T] or None.
        sampler: an electra_fast.samplers sampler (UniformSampler, UnigramSampler, ClusterSampler) on the
            ids' device.
        validate: raise ValueError for ids outside [0, V) (one host sync); False skips the check.
    Returns:
        corrupted_ids [B, T], is_replaced = corrupted_ids != input_ids [B, T] bool, is_masked [B, T] bool.
    """
    if not hasattr(sampler, "tables") or not hasattr(sampler, "vocab_size"):
        raise TypeError(f"sampler must be an electra_fast.samplers sampler, got {type(sampler).__name__}")
    _, is_masked = _select(input_ids, attention_mask, mask_prob, -1, special_token_ids, 0.0, seed, offset)
    ids = input_ids.contiguous()
    tables = sampler.tables()
    if tables.cdf.device != ids.device:
        raise ValueError(f"sampler is on {tables.cdf.device} but input_ids is on {ids.device}; "
                         "move it with sampler.to(device)")
    if validate and not torch.compiler.is_compiling() and ids.numel():
        vocab = sampler.vocab_size
        low, high = torch.stack(ids.aminmax()).tolist()  # the one host sync; the count only on failure
        if low < 0 or high >= vocab:
            bad = int(((ids < 0) | (ids >= vocab)).sum())
            raise ValueError(f"input_ids must lie in [0, sampler.vocab_size) = [0, {vocab}); found {bad} ids outside")
    corrupted, is_replaced = statistical_fill_op(ids, is_masked, *tables, seed, offset)
    return corrupted, is_replaced, is_masked
