"""Bad input to the public ops (electra_fast.functional), on every CPU backend: a ValueError or TypeError that
names what is wrong, never an id outside the vocabulary, a raw error from inside, or a silently wrong result."""
import math

import pytest
import torch

import electra_fast.functional as EF
from electra_fast import backend
from electra_fast.ops import generator_head as generator_head_module
from tests.helpers import CPU_PAIRS, pair_id

BACKENDS = [pytest.param(pair[1], id=pair_id(pair)) for pair in CPU_PAIRS]
V, E = 50, 8


def _head_inputs(m=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, E, generator=g), torch.randn(V, E, generator=g), torch.randn(V, generator=g), \
        torch.randint(0, V, (m,), generator=g)


def _replace_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (2, 5), generator=g)
    is_masked = torch.zeros(2, 5, dtype=torch.bool)
    is_masked[0, 1] = is_masked[1, 3] = True
    return torch.randn(2, V, generator=g), ids, is_masked


def _generator_head(temperature):
    hidden, weight, bias, targets = _head_inputs()
    return EF.generator_head(hidden, weight, bias, targets, temperature=temperature, seed=1)[1]


def _sample_replace(temperature):
    logits, ids, is_masked = _replace_inputs()
    return EF.sample_replace(logits, ids, is_masked, temperature=temperature, seed=1)[0]


# ----------------------------------------------------------------------------------------- temperature
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("op", [_generator_head, _sample_replace], ids=["generator_head", "sample_replace"])
@pytest.mark.parametrize("temperature", [1e-40, 1e-39, -1.0, float("nan"), float("inf"), -0.5])
def test_both_sampling_ops_reject_the_same_temperatures(name, op, temperature):
    """1e-40 and 1e-39 have no float32 inverse: the kernels' weights would all be NaN (generator_head used to
    return -1 on cpp and 0 on the reference)."""
    with backend.use(name), pytest.raises(ValueError, match="temperature must be 0 .argmax. or a positive finite"):
        op(temperature)


@pytest.mark.parametrize("op", [_generator_head, _sample_replace], ids=["generator_head", "sample_replace"])
@pytest.mark.parametrize("temperature", [True, "1.0", None])
def test_a_temperature_that_is_not_a_number_is_a_type_error(op, temperature):
    with pytest.raises(TypeError, match="temperature must be a float"):
        op(temperature)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("temperature", [0.0, 3e-39, 1e-30, 0.55, 2.0, 1e30])
def test_accepted_temperatures_give_ids_in_the_vocabulary(name, temperature):
    with backend.use(name):
        for op in (_generator_head, _sample_replace):
            ids = op(temperature)
            assert ((ids >= 0) & (ids < V)).all()


# ------------------------------------------------------------------------------------ non-finite hidden
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("where", ["hidden_nan", "hidden_inf", "weight_nan", "bias_inf", "overflow"])
def test_non_finite_logits_in_generator_head_are_a_clear_error(name, where):
    """NaN/inf in hidden (or weight, bias, or an overflowing product) used to give the id -1 on cpp and 0 on the
    reference, and an IndexError further on in the model."""
    hidden, weight, bias, targets = _head_inputs()
    if where == "hidden_nan":
        hidden[2, 3] = float("nan")
    elif where == "hidden_inf":
        hidden[4, 0] = float("inf")
    elif where == "weight_nan":
        weight[7] = float("nan")
    elif where == "bias_inf":
        bias[5] = float("inf")
    else:
        hidden[1] = 1e30
        weight = weight.abs() * 1e30
    with backend.use(name), pytest.raises(ValueError, match="NaN or \\+inf in [0-9]+ of 6 rows"):
        EF.generator_head(hidden, weight, bias, targets, seed=3)


def test_without_a_host_check_a_row_without_a_sample_takes_its_target(monkeypatch):
    """Where the op cannot read the samples without a host sync (GPU, torch.compile), a row the kernels marked
    with -1 gets its target (clamped into the vocabulary), never -1."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    samples = torch.tensor([4, -1, 7, -1])
    targets = torch.tensor([4, 9, 7, -100])
    out = generator_head_module._sampled_ids(samples, targets, V)
    assert out.tolist() == [4, 9, 7, 0]


# ------------------------------------------------------------------------------------------ mask_tokens
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype, mask_id", [(torch.int32, 2**32 + 7), (torch.int32, 2**31), (torch.int64, 2**63)])
def test_a_mask_id_that_does_not_fit_the_ids_is_an_error(name, dtype, mask_id):
    """With int32 ids, mask_token_id 2**32 + 7 used to be written as 7."""
    ids = torch.randint(5, 40, (2, 12), dtype=dtype)
    with backend.use(name), pytest.raises(ValueError, match=f"mask_token_id {mask_id} does not fit"):
        EF.mask_tokens(ids, None, mask_token_id=mask_id, seed=0)
    with backend.use(name):
        masked, is_masked = EF.mask_tokens(ids, None, mask_token_id=torch.iinfo(dtype).max, seed=0)
    assert (masked[is_masked & (masked != ids)] == torch.iinfo(dtype).max).all()


# ------------------------------------------------------------------------------------- early-exit plumbing
@pytest.mark.parametrize("name", BACKENDS)
def test_scatter_tokens_refuses_duplicate_indices(name):
    """Two tokens for one row: which lands was up to the kernel, and the gradient went to both."""
    base = torch.zeros(2, 3, 4, requires_grad=True)
    tokens = torch.randn(2, 4, requires_grad=True)
    with backend.use(name), pytest.raises(ValueError, match="index has duplicate entries"):
        EF.scatter_tokens(tokens, torch.tensor([4, 4]), base)


def _packed(cu, max_seqlen, n=5):
    return EF.Packed(torch.randn(n, 4), torch.arange(n), torch.tensor(cu, dtype=torch.int32), max_seqlen)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("cu, max_seqlen, message", [
    ([0, 2, 4], 3, "rise from 0 to the 5 packed tokens"),      # ends short of N
    ([0, 3, 7], 4, "rise from 0 to the 5 packed tokens"),      # ends past N
    ([1, 3, 5], 3, "rise from 0 to the 5 packed tokens"),      # does not start at 0
    ([0, 4, 2, 5], 3, "rise from 0 to the 5 packed tokens"),   # a negative count
    ([0, 4, 5], 2, "max_seqlen 2 is below the longest row"),
])
def test_pad_packed_and_unpad_refuse_inconsistent_cu_seqlens(name, cu, max_seqlen, message):
    packed = _packed(cu, max_seqlen)
    with backend.use(name):
        with pytest.raises(ValueError, match=message):
            EF.pad_packed(packed, len(cu) - 1)
        with pytest.raises(ValueError, match=message):
            EF.unpad(torch.zeros(len(cu) - 1, max_seqlen, 4), packed)


# ------------------------------------------------------------------------------------- the classes, swept
def _bad_calls():
    """(what, call, exception, message) for each class of bad input to each op."""
    hidden, weight, bias, targets = _head_inputs()
    logits, ids, is_masked = _replace_inputs()
    x = torch.randn(2, 5, 4)
    active = torch.rand(2, 5) < 0.5
    nan = float("nan")
    return [
        ("head: targets out of range", lambda: EF.generator_head(hidden, weight, bias, targets + V, seed=0),
         ValueError, "targets must be in"),
        ("head: half weight", lambda: EF.generator_head(hidden, weight.half(), bias, targets, seed=0),
         TypeError, "weight must have hidden's dtype"),
        ("head: 3-D hidden", lambda: EF.generator_head(hidden[None], weight, bias, targets, seed=0),
         ValueError, "hidden must be 2-D"),
        ("head: seed float", lambda: EF.generator_head(hidden, weight, bias, targets, seed=1.5),
         TypeError, "seed must be a Python int"),
        ("head: negative offset", lambda: EF.generator_head(hidden, weight, bias, targets, seed=0, offset=-1),
         ValueError, "offset must be in"),
        ("head: chunk 0", lambda: EF.generator_head(hidden, weight, bias, targets, seed=0, chunk_size=0),
         ValueError, "chunk_size"),
        ("replace: NaN logits", lambda: EF.sample_replace(logits.index_fill(1, torch.tensor([3]), nan), ids,
                                                          is_masked, seed=0), ValueError, "NaN or \\+inf"),
        ("replace: too few rows", lambda: EF.sample_replace(logits[:1], ids, is_masked, seed=0),
         ValueError, "one row per masked position"),
        ("replace: ids out of range", lambda: EF.sample_replace(logits, ids + V, is_masked, seed=0),
         ValueError, "input_ids must lie in"),
        ("replace: all -inf", lambda: EF.sample_replace(torch.full((2, V), -math.inf), ids, is_masked, seed=0),
         ValueError, "no finite logit"),
        ("mask: negative mask id", lambda: EF.mask_tokens(ids, None, mask_token_id=-1, seed=0),
         TypeError, "mask_token_id must be a non-negative"),
        ("mask: mask_prob 0", lambda: EF.mask_tokens(ids, None, mask_token_id=3, mask_prob=0.0, seed=0),
         ValueError, "mask_prob must be in"),
        ("mask: float ids", lambda: EF.mask_tokens(ids.float(), None, mask_token_id=3, seed=0),
         TypeError, "input_ids must have dtype"),
        ("rtd: labels 2", lambda: EF.rtd_loss(torch.randn(2, 5), torch.full((2, 5), 2), None),
         ValueError, "labels"),
        ("rtd: shape", lambda: EF.rtd_loss(torch.randn(2, 5), torch.zeros(2, 4, dtype=torch.bool), None),
         ValueError, "labels"),
        ("gather: active shape", lambda: EF.gather_tokens(x, active[:, :3]), ValueError, "active must have shape"),
        ("scatter: index out of range", lambda: EF.scatter_tokens(torch.randn(1, 4), torch.tensor([10]), x),
         ValueError, "index out of range"),
        ("exit_mask: threshold 1.5", lambda: EF.exit_mask(torch.randn(2, 5), active, threshold=1.5),
         ValueError, "threshold"),
        ("pad_packed: not a Packed", lambda: EF.pad_packed((x, None), 2), TypeError, "packed must be the Packed"),
    ]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("case", range(len(_bad_calls())), ids=[c[0] for c in _bad_calls()])
def test_bad_input_classes_are_named_errors(name, case):
    _, call, exception, message = _bad_calls()[case]
    with backend.use(name), pytest.raises(exception, match=message):
        call()
