"""Token-level early exit (exit_mask, gather_tokens, pad_packed, unpad, scatter_tokens, select_tokens) on
every backend: against the reference (values bit for bit, gradients), the literal confidence formula and
selection key, edge cases (empty/full/one-token rows, odd H, thresholds exactly at the bound, ties,
NaN/inf logits, k = 0 and k = T), nested exits, gradcheck, opcheck, torch.compile(fullgraph=True) with a
dynamic number of tokens, int64 index math past 2^31 elements, and bad input."""
import math

import numpy as np
import pytest
import torch

from electra_fast import backend
from electra_fast import functional as F
from electra_fast.ops import early_exit as ops
from electra_fast.reference import early_exit as reference
from tests.helpers import CPU_PAIRS, over_pairs

DTYPES = (torch.float32, torch.float16, torch.bfloat16)



def _mask(shape, pattern, seed=0):
    """[B,T] bool: random ~50%, with row 1 empty and row 2 full where they exist; or all/none."""
    g = torch.Generator().manual_seed(seed)
    if pattern == "all":
        return torch.ones(shape, dtype=torch.bool)
    if pattern == "none":
        return torch.zeros(shape, dtype=torch.bool)
    m = torch.rand(shape, generator=g) < 0.5
    if pattern == "mixed" and shape[0] > 2:
        m[1] = False
        m[2] = True
    return m


def _hidden(shape, dtype, device, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(dtype).to(device)


SHAPES = [(4, 7, 5), (3, 33, 13), (5, 1, 8), (2, 300, 3)]  # odd H, one-token rows, a row longer than a scan step


# ------------------------------------------------------------------------------------------ exit_mask
@over_pairs()
@pytest.mark.parametrize("dtype", DTYPES + (torch.float64,))
@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.9, 0.999, 1.0])
def test_exit_mask_matches_reference_and_formula(on, dtype, threshold):
    device, _ = on
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(6, 45, generator=g) * 4).to(dtype)
    active = torch.rand(6, 45, generator=g) < 0.8
    ids = torch.randint(0, 10, (6, 45), generator=g)
    out = F.exit_mask(logits.to(device), active.to(device), threshold=threshold)
    assert out.dtype == torch.bool and out.shape == logits.shape
    expected = reference.exit_mask(logits, active, threshold)
    assert torch.equal(out.cpu(), expected)
    # the literal definition, in fp64, away from exact ties
    p = torch.sigmoid(logits.double())
    assert torch.equal(expected, active & (torch.maximum(p, 1 - p) < threshold))
    kept = F.exit_mask(logits.to(device), active.to(device), threshold=threshold, keep_ids=[0, 7],
                       input_ids=ids.to(device))
    assert torch.equal(kept.cpu(), expected | (active & ((ids == 0) | (ids == 7))))
    kept_t = F.exit_mask(logits.to(device), active.to(device), threshold=threshold,
                         keep_ids=torch.tensor([0, 7], dtype=torch.int32, device=device),
                         input_ids=ids.to(torch.int32).to(device))
    assert torch.equal(kept_t, kept)


@over_pairs()
@pytest.mark.parametrize("dtype", DTYPES)
def test_exit_mask_exactly_at_threshold(on, dtype):
    device, _ = on
    # logit(sigmoid(1.0)) is exactly 1.0 in float64: |x| == 1 is confidence == threshold, so it exits
    t = 1.0 / (1.0 + math.exp(-1.0))
    assert reference.threshold_logit(t) == 1.0
    one = torch.tensor(1.0, dtype=dtype)
    below = torch.nextafter(one, torch.tensor(0.0, dtype=dtype))
    above = torch.nextafter(one, torch.tensor(2.0, dtype=dtype))
    x = torch.stack([one, -one, below, -below, above, -above, torch.tensor(float("nan"), dtype=dtype)])[None]
    active = torch.ones_like(x, dtype=torch.bool)
    out = F.exit_mask(x.to(device), active.to(device), threshold=t).cpu()
    assert out.tolist() == [[False, False, True, True, False, False, False]]
    # a threshold whose float64 logit lies just above a float32 value: that value must stay
    t = 1.0 / (1.0 + math.exp(-2.5))
    bound = reference.threshold_logit(t)
    assert bound > 2.5 and float(np.float32(bound)) == 2.5
    x = torch.tensor([[2.5, -2.5, 2.5000002]], dtype=torch.float32)
    out = F.exit_mask(x.to(device), torch.ones_like(x, dtype=torch.bool).to(device), threshold=t).cpu()
    assert out.tolist() == [[True, True, False]]


@over_pairs()
def test_exit_mask_edges(on):
    device, _ = on
    x = torch.tensor([[0.0, -0.0, 1e-30, 30.0, float("inf"), -float("inf")]], device=device)
    active = torch.ones_like(x, dtype=torch.bool)
    assert not F.exit_mask(x, active, threshold=0.5).any()  # nothing is less confident than 0.5
    assert F.exit_mask(x, active, threshold=1.0).cpu().tolist() == [[True, True, True, True, False, False]]
    # inactive tokens never come back, kept ids or not
    ids = torch.full_like(x, 5, dtype=torch.int64)
    none = torch.zeros_like(active)
    assert not F.exit_mask(x, none, threshold=0.9, keep_ids=[5], input_ids=ids).any()
    assert F.exit_mask(x, active, threshold=0.5, keep_ids=[5], input_ids=ids).all()
    empty = torch.empty(0, 4, device=device)
    assert F.exit_mask(empty, empty.bool(), threshold=0.9).shape == (0, 4)
    assert not F.exit_mask(x, active, threshold=0.9).requires_grad


# ------------------------------------------------------------------------------------ gather/scatter
def _assert_packed_equal(packed, ref):
    tokens, index, cu, max_seqlen = ref
    assert isinstance(packed, F.Packed)
    assert packed.index.dtype == torch.int64 and packed.cu_seqlens.dtype == torch.int32
    assert torch.equal(packed.tokens.cpu(), tokens.cpu())
    assert torch.equal(packed.index.cpu(), index.cpu())
    assert torch.equal(packed.cu_seqlens.cpu(), cu.cpu())
    assert packed.max_seqlen == max_seqlen and isinstance(packed.max_seqlen, int)


@over_pairs()
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("pattern", ["mixed", "all", "none"])
def test_gather_scatter_match_reference(on, shape, pattern):
    device, _ = on
    hidden = _hidden(shape, torch.float32, device)
    active = _mask(shape[:2], pattern).to(device)
    h_ours = hidden.clone().requires_grad_(True)
    h_ref = hidden.clone().requires_grad_(True)
    packed = F.gather_tokens(h_ours, active)
    ref = reference.gather_tokens(h_ref, active)
    _assert_packed_equal(packed, ref)
    assert packed.max_seqlen == int(active.sum(1).max())

    # a layer on the packed tokens, then restore over the original hidden states
    w = _hidden((shape[2], shape[2]), torch.float32, device, seed=2)
    out = F.scatter_tokens(packed.tokens @ w, packed.index, h_ours)
    out_ref = reference.scatter_tokens(ref[0] @ w, ref[1], h_ref)
    assert torch.equal(out, out_ref)
    up = _hidden(shape, torch.float32, device, seed=4)
    out.backward(up)
    out_ref.backward(up)
    torch.testing.assert_close(h_ours.grad, h_ref.grad, rtol=1e-6, atol=1e-6)
    # exited tokens pass through untouched; restored rows are the layer's output
    assert torch.equal(out[~active], hidden[~active])


@over_pairs()
@pytest.mark.parametrize("dtype", DTYPES + (torch.float64,))
def test_dtypes_and_separate_gradients(on, dtype):
    device, _ = on
    shape = (3, 9, 7)
    hidden = _hidden(shape, dtype, device)
    active = _mask(shape[:2], "mixed").to(device)
    packed = F.gather_tokens(hidden, active)
    _assert_packed_equal(packed, reference.gather_tokens(hidden, active))
    tokens = _hidden((packed.tokens.shape[0], 7), dtype, device, seed=5).requires_grad_(True)
    base = hidden.clone().requires_grad_(True)
    out = F.scatter_tokens(tokens, packed.index, base)
    assert out.dtype == dtype
    up = _hidden(shape, dtype, device, seed=6)
    g_tokens, g_base = torch.autograd.grad(out, (tokens, base), up)
    flat_up = up.reshape(-1, 7)
    assert torch.equal(g_tokens, flat_up[packed.index])  # gather of the gradient
    assert torch.equal(g_base[active], torch.zeros_like(g_base[active]))  # rows at index zeroed
    assert torch.equal(g_base[~active], up[~active])
    # the gradient of gather is a scatter into zeros
    leaf = hidden.clone().requires_grad_(True)
    tok_up = _hidden(tuple(packed.tokens.shape), dtype, device, seed=7)
    (g_hidden,) = torch.autograd.grad(F.gather_tokens(leaf, active).tokens, leaf, tok_up)
    assert torch.equal(g_hidden[active], tok_up)
    assert not g_hidden[~active].any()


@over_pairs()
@pytest.mark.parametrize("shape", [(4, 7, 5), (3, 33, 13), (5, 1, 8)], ids=lambda s: "x".join(map(str, s)))
def test_pad_packed_and_unpad(on, shape):
    device, _ = on
    hidden = _hidden(shape, torch.float32, device).requires_grad_(True)
    active = _mask(shape[:2], "mixed").to(device)
    packed = F.gather_tokens(hidden, active)
    padded, pad_mask = F.pad_packed(packed, shape[0])
    ref_padded, ref_mask = reference.pad_packed(reference.gather_tokens(hidden.detach(), active), shape[0])
    assert padded.shape == (shape[0], packed.max_seqlen, shape[2]) and pad_mask.dtype == torch.bool
    assert torch.equal(padded, ref_padded) and torch.equal(pad_mask, ref_mask)
    assert not padded[~pad_mask].any()
    assert torch.equal(pad_mask.sum(1), active.sum(1))
    back = F.unpad(padded * 3, packed)
    assert torch.equal(back, packed.tokens * 3)
    back.sum().backward()
    assert torch.equal(hidden.grad, torch.where(active[..., None], 3.0, 0.0).expand(shape))


@over_pairs()
def test_nested_exits_compose(on):
    """gather -> layer -> exit -> gather again -> layer -> scatter -> scatter, vs the reference pipeline."""
    device, _ = on
    b, t, h = 4, 11, 6
    hidden = _hidden((b, t, h), torch.float32, device)
    active = _mask((b, t), "mixed").to(device)
    w1 = _hidden((h, h), torch.float32, device, seed=8)
    w2 = _hidden((h, h), torch.float32, device, seed=9)
    head = _hidden((h,), torch.float32, device, seed=10)

    def pipeline(x, fn):
        # level 1: packed tokens of [B,T]; level 2: the survivors among them, re-padded as [B,L]
        gather, scatter, pad, unpad_ = fn
        p1 = gather(x, active)
        y1 = torch.tanh(p1[0] @ w1)
        padded, pad_mask = pad(p1, b) if pad else (None, None)
        still = reference.exit_mask(padded @ head, pad_mask, 0.8) if pad else None
        p2 = gather(padded, still)
        y2 = torch.tanh(p2[0] @ w2)
        padded2 = scatter(y2, p2[1], padded)
        y1b = unpad_(padded2, p1)
        return scatter(y1b + y1, p1[1], x)

    def ours(x):
        return pipeline(x, (F.gather_tokens, F.scatter_tokens, F.pad_packed, F.unpad))

    def ref(x):
        return pipeline(x, (reference.gather_tokens, reference.scatter_tokens, reference.pad_packed, reference.unpad))

    x1 = hidden.clone().requires_grad_(True)
    x2 = hidden.clone().requires_grad_(True)
    out, out_ref = ours(x1), ref(x2)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=0)
    out.square().sum().backward()
    out_ref.square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-6, atol=1e-6)

    # the same nesting on the packed tokens themselves, seen as one row [1, N, H]
    p1 = F.gather_tokens(x1.detach(), active)
    inner = _mask((1, p1.tokens.shape[0]), "random", seed=11).to(device)
    p2 = F.gather_tokens(p1.tokens[None], inner)
    assert torch.equal(p2.tokens, p1.tokens[inner[0]])
    restored = F.scatter_tokens(p2.tokens * 2, p2.index, p1.tokens[None])[0]
    full = F.scatter_tokens(restored, p1.index, x1.detach())
    expected = x1.detach().clone()
    expected[active] = torch.where(inner[0, :, None], p1.tokens * 2, p1.tokens)
    assert torch.equal(full, expected)


@over_pairs()
def test_empty_batches(on):
    device, _ = on
    for shape in [(0, 5, 3), (3, 0, 3), (2, 4, 0)]:
        hidden = torch.randn(shape, device=device)
        active = torch.ones(shape[:2], dtype=torch.bool, device=device)
        packed = F.gather_tokens(hidden, active)
        n = shape[0] * shape[1]
        assert packed.tokens.shape == (n, shape[2]) and packed.cu_seqlens.shape == (shape[0] + 1,)
        assert packed.max_seqlen == (shape[1] if shape[0] else 0)
        assert torch.equal(F.scatter_tokens(packed.tokens, packed.index, hidden), hidden)
        padded, pad_mask = F.pad_packed(packed, shape[0])
        assert padded.shape == (shape[0], packed.max_seqlen, shape[2])


@over_pairs()
def test_non_contiguous_inputs(on):
    device, _ = on
    base = _hidden((5, 9, 8), torch.float32, device)
    hidden = base.transpose(0, 1)[:, :4]  # [9, 4, 8], non-contiguous
    active = _mask((5, 9), "mixed").to(device).t()[:, :4]
    packed = F.gather_tokens(hidden, active)
    _assert_packed_equal(packed, reference.gather_tokens(hidden.contiguous(), active.contiguous()))
    out = F.scatter_tokens(packed.tokens[:, :].t().contiguous().t(), packed.index, hidden)
    assert torch.equal(out, hidden)


# --------------------------------------------------------------------------------- autograd checks
@over_pairs()
def test_gradcheck_float64(on):
    device, name = on
    hidden = _hidden((3, 4, 2), torch.float64, device).requires_grad_(True)
    active = _mask((3, 4), "mixed").to(device)
    packed = F.gather_tokens(hidden.detach(), active)
    tokens = _hidden(tuple(packed.tokens.shape), torch.float64, device, seed=3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: F.gather_tokens(x, active).tokens, (hidden,))
    assert torch.autograd.gradcheck(lambda tok, base: F.scatter_tokens(tok, packed.index, base), (tokens, hidden))
    if name != "triton" or device != "cpu":  # double backward is the same ops again; the interpreter is slow
        assert torch.autograd.gradgradcheck(lambda x: F.gather_tokens(x, active).tokens, (hidden,))
        assert torch.autograd.gradgradcheck(lambda tok, base: F.scatter_tokens(tok, packed.index, base),
                                            (tokens, hidden))
    assert torch.autograd.gradcheck(lambda tok: F.pad_packed(packed._replace(tokens=tok), 3)[0], (tokens,))
    padded = _hidden((3, packed.max_seqlen, 2), torch.float64, device, seed=4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: F.unpad(p, packed), (padded,))


@over_pairs()
def test_opcheck(on):
    device, _ = on
    src = _hidden((12, 5), torch.float32, device)
    index = torch.tensor([0, 3, 4, 11], device=device)
    tokens = _hidden((4, 5), torch.float32, device, seed=2)
    torch.library.opcheck(ops.gather_rows_op, (src, index))
    torch.library.opcheck(ops.gather_rows_op, (src.half(), index))
    torch.library.opcheck(ops.scatter_rows_op, (tokens, index, src, 12))
    torch.library.opcheck(ops.scatter_rows_op, (tokens, index, None, 12))
    torch.library.opcheck(ops.scatter_rows_op, (None, index, src, 12))
    logits = _hidden((3, 4), torch.float32, device)
    active = _mask((3, 4), "random").to(device)
    ids = torch.randint(0, 4, (3, 4), device=device)
    keep = torch.tensor([1], device=device)
    torch.library.opcheck(ops.exit_mask_op, (logits, active, None, None, 0.8))
    torch.library.opcheck(ops.exit_mask_op, (logits.bfloat16(), active, ids, keep, 0.6))
    # data-dependent output sizes: the fake gives unbacked sizes, which opcheck's aot_dispatch_dynamic
    # cannot compare against a real run, so that one utility is left out for compact
    torch.library.opcheck(ops.compact_op, (_mask((3, 6), "mixed").to(device),),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@over_pairs()
def test_torch_compile_fullgraph_dynamic_tokens(on):
    device, name = on
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    b, t, h = 3, 10, 4
    w = _hidden((h, h), torch.float32, device, seed=2)

    def step(x, logits, active):
        still = F.exit_mask(logits, active, threshold=0.9)
        packed = F.gather_tokens(x, still)
        padded, pad_mask = F.pad_packed(packed, b)
        y = F.unpad(torch.tanh(padded * w[0]) * pad_mask[..., None], packed) @ w
        return F.scatter_tokens(y, packed.index, x), packed.max_seqlen

    # inductor's CPU codegen takes a minute here: the default CPU backend gets it, the others check
    # the same tracing (fakes, unbacked sizes, autograd) through aot_eager
    compiler = "inductor" if name == "cpp" or device == "cuda" else "aot_eager"
    compiled = torch.compile(step, fullgraph=True, dynamic=False, backend=compiler)
    for seed in range(3):  # three different numbers of active tokens, one graph
        x = _hidden((b, t, h), torch.float32, device, seed=seed).requires_grad_(True)
        logits = _hidden((b, t), torch.float32, device, seed=seed + 10) * 3
        active = _mask((b, t), "random", seed=seed).to(device)
        out, max_seqlen = compiled(x, logits, active)
        x_ref = x.detach().clone().requires_grad_(True)
        out_ref, max_ref = step(x_ref, logits, active)
        assert max_seqlen == max_ref
        torch.testing.assert_close(out, out_ref)
        out.sum().backward()
        out_ref.sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad)
    # N changed between calls without recompiling: frame 0 compiled once
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


# ------------------------------------------------------------------------------------ select_tokens
KEEP = (1, 2)  # [CLS] and [SEP] stand-ins


def _select_inputs(shape, seed=0):
    """(logits [B,T] float32 full of ties, NaN and +-inf; active [B,T] with row 1 all inactive; ids [B,T])."""
    b, t, _ = shape
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(-3, 4, (b, t), generator=g) * 0.5  # +-x and repeated values: ties
    logits = torch.where(torch.rand(b, t, generator=g) < 0.5, coarse, torch.randn(b, t, generator=g) * 3)
    special = torch.rand(b, t, generator=g)
    for low, value in ((0.00, float("nan")), (0.04, -float("nan")), (0.08, float("inf")), (0.12, -float("inf")),
                       (0.16, -0.0)):
        logits[(special >= low) & (special < low + 0.04)] = value
    active = _mask((b, t), "mixed", seed)
    ids = torch.randint(0, 6, (b, t), generator=g)
    return logits, active, ids


def _brute_index(logits, k, active=None, ids=None, keep=()):
    """[B,k]: the key's literal definition in Python, on numpy's float32 rounding of the logits."""
    x = logits.detach().double().cpu().numpy().astype(np.float32)
    b, t = x.shape

    def key(row, pos):
        c = 1
        if active is not None and not active[row, pos]:
            c = 2
        elif ids is not None and int(ids[row, pos]) in keep:
            c = 0
        conf = 0
        if c == 1:
            conf = 0x7FFFFFFF if math.isnan(x[row, pos]) else int(x[row, pos].view(np.uint32)) & 0x7FFFFFFF
        return (c << 61) | (conf << 30) | pos

    rows = [sorted(sorted(range(t), key=lambda pos: key(row, pos))[:k]) for row in range(b)]
    return torch.tensor(rows, dtype=torch.int64).view(b, k)


def _assert_selected(sel, hidden, expected_index):
    assert isinstance(sel, F.Selected)
    assert sel.index.dtype == torch.int64 and sel.tokens.dtype == hidden.dtype
    assert torch.equal(sel.index.cpu(), expected_index)
    b, k = expected_index.shape
    assert sel.tokens.shape == (b, k, hidden.shape[2])
    expected = hidden.cpu().gather(1, expected_index[..., None].expand(-1, -1, hidden.shape[2]))
    assert torch.equal(sel.tokens.cpu(), expected)


@over_pairs()
@pytest.mark.parametrize("dtype", DTYPES + (torch.float64,))
def test_select_tokens_by_hand(on, dtype):
    device, _ = on
    # [CLS] a a a a a [SEP] pad: kept ids first, then |logit| ascending (0.25 twice: the lower position
    # first), +inf, NaN; the inactive pad last
    ids = torch.tensor([[1, 5, 5, 5, 5, 5, 2, 0]])
    logits = torch.tensor([[9.0, 0.5, -0.25, float("nan"), float("inf"), 0.25, 7.0, -0.0]], dtype=dtype)
    active = torch.tensor([[True] * 7 + [False]])
    hidden = torch.arange(8.0).view(1, 8, 1).to(device)
    order = [0, 6, 2, 5, 1, 4, 3, 7]
    for k in range(9):
        sel = F.select_tokens(hidden, logits.to(device), k, active=active.to(device), keep_ids=list(KEEP),
                              input_ids=ids.to(device))
        expected = torch.tensor([sorted(order[:k])], dtype=torch.int64)
        _assert_selected(sel, hidden, expected)
    # without keep_ids or active: the confidence order alone; -0.0 and 0.0 tie, and so do -1.0 and 1.0
    logits = torch.tensor([[3.0, -0.0, 0.0, -1.0, float("-inf"), float("nan"), 1.0]], dtype=dtype)
    order = [1, 2, 3, 6, 0, 4, 5]
    for k in range(8):
        sel = F.select_tokens(hidden[:, :7], logits.to(device), k)
        _assert_selected(sel, hidden[:, :7], torch.tensor([sorted(order[:k])], dtype=torch.int64))


@over_pairs()
def test_select_tokens_nan_payloads_tie(on):
    device, _ = on
    # NaNs of different payloads and signs all count as one value above +inf: position decides
    bits = torch.tensor([[0x7FFFFFFF, 0x7F800001, -0x400000, 0x7FC00000, 0x7F800000, 0x3F800000]], dtype=torch.int32)
    logits = bits.view(torch.float32)
    assert logits[0, :4].isnan().all() and logits[0, 4] == float("inf")
    hidden = torch.arange(6.0).view(1, 6, 1).to(device)
    for k, expected in ((2, [4, 5]), (3, [0, 4, 5]), (4, [0, 1, 4, 5]), (5, [0, 1, 2, 4, 5])):
        _assert_selected(F.select_tokens(hidden, logits.to(device), k), hidden, torch.tensor([expected]))


@over_pairs()
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_select_tokens_matches_reference_and_brute_force(on, shape):
    device, _ = on
    b, t, h = shape
    logits, active, ids = _select_inputs(shape)
    hidden = _hidden(shape, torch.float32, device)
    for k in sorted({0, 1, t // 3, t // 2, t - 1, t}):
        plain = F.select_tokens(hidden, logits.to(device), k)
        _assert_selected(plain, hidden, _brute_index(logits, k))
        sel = F.select_tokens(hidden, logits.to(device), k, active=active.to(device),
                              keep_ids=torch.tensor(KEEP, device=device), input_ids=ids.to(device))
        expected = _brute_index(logits, k, active, ids, KEEP)
        _assert_selected(sel, hidden, expected)
        rank = ((~torch.isin(ids, torch.tensor(KEEP))).to(torch.uint8)).masked_fill(~active, 2)
        ref_tokens, ref_index = reference.select_tokens(hidden.cpu(), logits, rank, k)
        assert torch.equal(ref_index, expected) and torch.equal(ref_tokens, sel.tokens.cpu())
        if b > 2:  # row 1 has no active token: it keeps its first k positions
            assert sel.index[1].tolist() == list(range(k))


@over_pairs()
@pytest.mark.parametrize("logit_dtype", DTYPES + (torch.float64,))
def test_select_tokens_dtypes(on, logit_dtype):
    device, _ = on
    shape = (3, 37, 9)
    logits, active, _ = _select_inputs(shape, seed=2)
    # float64 logits closer than float32 resolution: they must tie after rounding to float32
    logits = logits.to(logit_dtype)
    if logit_dtype == torch.float64:
        logits[:, 1:6] = torch.tensor([1.0, 1.0 + 2**-30, 1.0 - 2**-30, 1.0 + 2**-24, 1.0 + 2**-23],
                                      dtype=torch.float64)
    for dtype in DTYPES + (torch.float64,):
        hidden = _hidden(shape, dtype, device)
        for k in (5, 20):
            sel = F.select_tokens(hidden, logits.to(device), k, active=active.to(device))
            _assert_selected(sel, hidden, _brute_index(logits, k, active))


@over_pairs()
def test_select_tokens_raw_op_rank_above_two_counts_as_two(on):
    device, _ = on
    logits, _, _ = _select_inputs((3, 19, 4), seed=3)
    rank = torch.randint(0, 256, (3, 19), dtype=torch.uint8)
    hidden = _hidden((3, 19, 4), torch.float32, device)
    tokens, index = ops.select_tokens_op(hidden, logits.to(device), rank.to(device), 12)
    ref_tokens, ref_index = reference.select_tokens(hidden.cpu(), logits, rank.clamp(max=2), 12)
    assert torch.equal(index.cpu(), ref_index) and torch.equal(tokens.cpu(), ref_tokens)


@over_pairs()
def test_select_tokens_gradient(on):
    device, _ = on
    shape = (4, 11, 6)
    logits, active, ids = _select_inputs(shape, seed=4)
    logits = logits.to(device).requires_grad_(True)
    hidden = _hidden(shape, torch.float32, device).requires_grad_(True)
    sel = F.select_tokens(hidden, logits, 5, active=active.to(device), keep_ids=KEEP, input_ids=ids.to(device))
    assert not sel.index.requires_grad and sel.tokens.requires_grad
    up = _hidden(tuple(sel.tokens.shape), torch.float32, device, seed=5)
    grad_hidden, grad_logits = torch.autograd.grad(sel.tokens, (hidden, logits), up, allow_unused=True)
    assert grad_logits is None  # a decision: no gradient to the logits
    expected = torch.zeros(shape, device=device).scatter(1, sel.index[..., None].expand(-1, -1, shape[2]), up)
    assert torch.equal(grad_hidden, expected)


@over_pairs()
def test_select_tokens_gradcheck_float64(on):
    device, name = on
    hidden = _hidden((3, 5, 2), torch.float64, device).requires_grad_(True)
    logits, active, _ = _select_inputs((3, 5, 2), seed=6)
    logits, active = logits.to(device), active.to(device)
    fn = lambda x: F.select_tokens(x, logits, 3, active=active).tokens  # noqa: E731
    assert torch.autograd.gradcheck(fn, (hidden,))
    if name != "triton" or device != "cpu":  # the same ops again; the interpreter is slow
        assert torch.autograd.gradgradcheck(fn, (hidden,))


@over_pairs()
def test_select_tokens_opcheck(on):
    device, _ = on
    logits, active, _ = _select_inputs((3, 7, 5), seed=7)
    hidden = _hidden((3, 7, 5), torch.float32, device)
    rank = (2 - active.to(torch.uint8)).to(device)
    logits = logits.to(device)
    for args in [(hidden, logits, rank, 4), (hidden.bfloat16(), logits.half(), rank, 0),
                 (hidden.double(), logits.double(), rank, 7)]:
        torch.library.opcheck(ops.select_tokens_op, args)


@over_pairs()
def test_select_tokens_torch_compile_fullgraph(on):
    device, name = on
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    b, t, h = 3, 10, 4
    w = _hidden((h, h), torch.float32, device, seed=2)
    keep = torch.tensor(KEEP, device=device)

    def step(x, logits, active, ids):
        sel = F.select_tokens(x, logits, 6, active=active, keep_ids=keep, input_ids=ids)
        flat = (sel.index + torch.arange(b, device=x.device)[:, None] * t).reshape(-1)
        y = torch.tanh(sel.tokens @ w).reshape(-1, h)
        return F.scatter_tokens(y, flat, x), sel.index

    compiler = "inductor" if name == "cpp" or device == "cuda" else "aot_eager"
    compiled = torch.compile(step, fullgraph=True, dynamic=False, backend=compiler)
    for seed in range(3):
        x = _hidden((b, t, h), torch.float32, device, seed=seed).requires_grad_(True)
        logits, active, ids = _select_inputs((b, t, h), seed=seed)
        args = (logits.to(device), active.to(device), ids.to(device))
        out, index = compiled(x, *args)
        x_ref = x.detach().clone().requires_grad_(True)
        out_ref, index_ref = step(x_ref, *args)
        assert torch.equal(index, index_ref)
        torch.testing.assert_close(out, out_ref)
        out.square().sum().backward()
        out_ref.square().sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_select_tokens_bad_input():
    hidden = torch.randn(2, 5, 3)
    logits = torch.randn(2, 5)
    active = torch.rand(2, 5) > 0.5
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(TypeError, match="hidden must be a torch.Tensor"):
        F.select_tokens(hidden.tolist(), logits, 2)
    with pytest.raises(ValueError, match="hidden must be 3-D"):
        F.select_tokens(hidden[0], logits, 2)
    with pytest.raises(TypeError, match="exit_logits must have dtype"):
        F.select_tokens(hidden, logits.long(), 2)
    with pytest.raises(ValueError, match="exit_logits must have shape"):
        F.select_tokens(hidden, logits[:, :4], 2)
    with pytest.raises(ValueError, match="exit_logits is on meta but hidden is on cpu"):
        F.select_tokens(hidden, logits.to("meta"), 2)
    for k in (True, 2.0, torch.tensor(2), None):
        with pytest.raises(TypeError, match="k must be an int"):
            F.select_tokens(hidden, logits, k)
    for k in (-1, 6):
        with pytest.raises(ValueError, match=r"k must be in \[0, T\] = \[0, 5\]"):
            F.select_tokens(hidden, logits, k)
    with pytest.raises(TypeError, match="active must have dtype"):
        F.select_tokens(hidden, logits, 2, active=active.to(torch.uint8))
    with pytest.raises(ValueError, match="active must have shape"):
        F.select_tokens(hidden, logits, 2, active=active[:, :4])
    with pytest.raises(ValueError, match="keep_ids and input_ids go together"):
        F.select_tokens(hidden, logits, 2, keep_ids=[1])
    with pytest.raises(ValueError, match="keep_ids and input_ids go together"):
        F.select_tokens(hidden, logits, 2, input_ids=ids)
    with pytest.raises(ValueError, match="input_ids must have the shape"):
        F.select_tokens(hidden, logits, 2, keep_ids=[1], input_ids=ids[:, :4])
    with pytest.raises(TypeError, match="input_ids must have dtype"):
        F.select_tokens(hidden, logits, 2, keep_ids=[1], input_ids=ids.float())
    with pytest.raises(TypeError, match="keep_ids must be a tensor or a sequence of ints"):
        F.select_tokens(hidden, logits, 2, keep_ids=[True], input_ids=ids)
    long_rows = torch.empty(1, 2**30, 1, device="meta")
    with pytest.raises(ValueError, match="shorter than 2\\^30 tokens"):
        F.select_tokens(long_rows, torch.empty(1, 2**30, device="meta"), 1)
    # the raw kernels check too, before writing anything
    if "cpp" in backend.available("cpu"):
        rank = torch.ones(2, 5, dtype=torch.uint8)
        raw = torch.ops.electra_fast_C.select_tokens
        with pytest.raises(RuntimeError, match="k must be in"):
            raw(hidden, logits, rank, 6)
        with pytest.raises(RuntimeError, match="rank must be"):
            raw(hidden, logits, rank.bool(), 2)
        with pytest.raises(RuntimeError, match="rank must be"):
            raw(hidden, logits, rank[:, :4].contiguous(), 2)
        with pytest.raises(RuntimeError, match="logits must be"):
            raw(hidden, logits.long(), rank, 2)
        with pytest.raises(RuntimeError, match="logits must be"):
            raw(hidden, logits[:1].contiguous(), rank, 2)
        with pytest.raises(RuntimeError, match="must be contiguous"):
            raw(hidden.transpose(0, 1).contiguous().transpose(0, 1), logits, rank, 2)
        with pytest.raises(RuntimeError, match="hidden must be 3-D"):
            raw(hidden[0], logits, rank, 2)


# ------------------------------------------------------------------------------------------- int64
def test_fake_shapes_past_2_31():
    """The custom ops' fakes and the public functions at B*T*H > 2^31, without memory."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    with FakeTensorMode(shape_env=ShapeEnv()):
        hidden = torch.empty(64, 2**16, 1024, dtype=torch.bfloat16)  # 2^32 elements
        active = torch.empty(64, 2**16, dtype=torch.bool)
        packed = F.gather_tokens(hidden, active)
        assert packed.tokens.shape[1] == 1024 and packed.cu_seqlens.shape == (65,)
        out = F.scatter_tokens(packed.tokens, packed.index, hidden)
        assert out.shape == hidden.shape
        padded, pad_mask = F.pad_packed(packed, 64)
        assert padded.shape[0] == 64 and padded.shape[2] == 1024


@pytest.mark.parametrize("name", [n for _, n in CPU_PAIRS if n != "reference"])
def test_int64_offsets_real(name):
    """Byte offsets past 2^31: a 2 GiB int8 batch (B*T*H = 2^31 + 2^16) whose active tokens sit at its
    far end, so row * H overflows int32 in the gather and the scatter. (Flat token positions past 2^31
    would need a 2 GiB mask as well: the fake test covers those shapes.)"""
    b, t, h = 2, 2**18 + 8, 2**12
    hidden = torch.empty(b, t, h, dtype=torch.int8)
    hidden[:, -4:] = torch.randint(-100, 100, (b, 4, h), dtype=torch.int8)
    active = torch.zeros(b, t, dtype=torch.bool)
    active[:, -3:] = True
    active[1, -2] = False
    with backend.use(name):
        packed = F.gather_tokens(hidden, active)
        expected_index = torch.tensor([t - 3, t - 2, t - 1, 2 * t - 3, 2 * t - 1])
        assert torch.equal(packed.index, expected_index)
        assert packed.cu_seqlens.tolist() == [0, 3, 5] and packed.max_seqlen == 3
        assert torch.equal(packed.tokens, hidden.view(-1, h)[expected_index])
        out = F.scatter_tokens(-packed.tokens, packed.index, hidden)
    tail, out_tail = hidden[:, -4:], out[:, -4:]
    assert torch.equal(out_tail[active[:, -4:]], -tail[active[:, -4:]])
    assert torch.equal(out_tail[~active[:, -4:]], tail[~active[:, -4:]])


# --------------------------------------------------------------------------------------- bad input
def test_bad_input():
    hidden = torch.randn(2, 5, 3)
    active = torch.rand(2, 5) > 0.5
    logits = torch.randn(2, 5)
    with pytest.raises(ValueError, match="active must have shape"):
        F.gather_tokens(hidden, active[:, :4])
    with pytest.raises(TypeError, match="active must have dtype"):
        F.gather_tokens(hidden, active.float())
    with pytest.raises(ValueError, match="hidden must be 3-D"):
        F.gather_tokens(hidden[0], active)
    with pytest.raises(TypeError, match="hidden must be a torch.Tensor"):
        F.gather_tokens(hidden.tolist(), active)
    with pytest.raises(TypeError, match="active must have dtype"):
        F.exit_mask(logits, active.to(torch.uint8), threshold=0.9)
    with pytest.raises(ValueError, match="active must have shape"):
        F.exit_mask(logits, active.t(), threshold=0.9)
    with pytest.raises(ValueError, match="threshold must be in"):
        F.exit_mask(logits, active, threshold=1.5)
    with pytest.raises(TypeError, match="threshold must be a float"):
        F.exit_mask(logits, active, threshold=torch.tensor(0.9))
    with pytest.raises(ValueError, match="keep_ids and input_ids go together"):
        F.exit_mask(logits, active, threshold=0.9, keep_ids=[1])
    with pytest.raises(ValueError, match="input_ids must have the shape"):
        F.exit_mask(logits, active, threshold=0.9, keep_ids=[1], input_ids=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="keep_ids must be a tensor or a sequence of ints"):
        F.exit_mask(logits, active, threshold=0.9, keep_ids=[1.5], input_ids=torch.zeros(2, 5, dtype=torch.long))

    packed = F.gather_tokens(hidden, active)
    n = packed.tokens.shape[0]
    with pytest.raises(ValueError, match="index out of range"):
        F.scatter_tokens(packed.tokens[:1], torch.tensor([10]), hidden)
    with pytest.raises(ValueError, match="index out of range"):
        F.scatter_tokens(packed.tokens[:1], torch.tensor([-1]), hidden)
    with pytest.raises(TypeError, match="index must have dtype"):
        F.scatter_tokens(packed.tokens, packed.index.int(), hidden)
    with pytest.raises(ValueError, match="index must have one entry per token"):
        F.scatter_tokens(packed.tokens, packed.index[:-1] if n else torch.tensor([0]), hidden)
    with pytest.raises(ValueError, match="hidden size"):
        F.scatter_tokens(packed.tokens[:, :2], packed.index, hidden)
    with pytest.raises(TypeError, match="one dtype"):
        F.scatter_tokens(packed.tokens.double(), packed.index, hidden)
    with pytest.raises(ValueError, match="batch_size 3 does not match"):
        F.pad_packed(packed, 3)
    with pytest.raises(TypeError, match="packed must be the Packed"):
        F.pad_packed(tuple(packed), 2)
    padded, _ = F.pad_packed(packed, 2)
    with pytest.raises(ValueError, match="padded must be"):
        F.unpad(padded[:, :-1], packed)
    # the raw kernels check too (what a caller bypassing the wrappers hits)
    if "cpp" in backend.available("cpu"):
        with pytest.raises(RuntimeError, match="index out of range"):
            torch.ops.electra_fast_C.gather_rows(hidden.view(10, 3), torch.tensor([10]))
        with pytest.raises(RuntimeError, match="must be contiguous"):
            torch.ops.electra_fast_C.gather_rows(hidden.view(10, 3).t(), torch.tensor([0]))


# -------------------------------------------------------------------------------------- GPU only
@pytest.mark.gpu
def test_one_host_sync_per_compaction_on_cuda():
    hidden = torch.randn(4, 64, 32, device="cuda")
    active = torch.rand(4, 64, device="cuda") > 0.5
    logits = torch.randn(4, 64, device="cuda")
    torch.cuda.synchronize()
    for name in [n for n in ("cuda", "triton") if n in backend.available("cuda")]:
        with backend.use(name):
            packed = F.gather_tokens(hidden, active)  # warm-up: lazy inits may sync
            torch.cuda.set_sync_debug_mode("warn")
            try:
                with pytest.warns(UserWarning, match="synchroniz") as record:
                    packed = F.gather_tokens(hidden, active)
                assert len([w for w in record if "synchroniz" in str(w.message)]) == 1, name
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    still = F.exit_mask(logits, active, threshold=0.9)
                    out = F.scatter_tokens(packed.tokens * 2, packed.index, hidden)
                    padded, _ = F.pad_packed(packed, 4)
                    F.unpad(padded, packed)
            finally:
                torch.cuda.set_sync_debug_mode(0)
            assert torch.equal(out[active], hidden[active] * 2) and still.dtype == torch.bool


@pytest.mark.gpu
@pytest.mark.parametrize("t", [4096, 5000])
def test_cuda_long_rows_and_wide_hidden(t):
    """One scan tile (T = 4096) and more than one, and rows copied in 16-byte units."""
    for name in [n for n in ("cuda", "triton") if n in backend.available("cuda")]:
        hidden = torch.randn(3, t, 768, device="cuda", dtype=torch.bfloat16)
        active = torch.rand(3, t, device="cuda") > 0.3
        with backend.use(name):
            packed = F.gather_tokens(hidden, active)
        _assert_packed_equal(packed, reference.gather_tokens(hidden, active))


@pytest.mark.gpu
@pytest.mark.parametrize("t", [512, 8000])
def test_select_tokens_cuda_long_rows(t):
    """Rows whose keys fit the default 48 KiB of shared memory and rows that need more."""
    logits, active, ids = _select_inputs((3, t, 1), seed=8)
    hidden = torch.randn(3, t, 768, device="cuda", dtype=torch.bfloat16)
    rank = ((~torch.isin(ids, torch.tensor(KEEP))).to(torch.uint8)).masked_fill(~active, 2)
    expected = reference.select_tokens(hidden.cpu(), logits, rank, t // 2)
    for name in [n for n in ("cuda", "triton") if n in backend.available("cuda")]:
        with backend.use(name):
            sel = F.select_tokens(hidden, logits.cuda(), t // 2, active=active.cuda(), keep_ids=KEEP,
                                  input_ids=ids.cuda())
        assert torch.equal(sel.index.cpu(), expected[1]) and torch.equal(sel.tokens.cpu(), expected[0]), name


@pytest.mark.gpu
def test_select_tokens_cuda_rows_too_long_for_shared_memory():
    if "cuda" not in backend.available("cuda"):
        pytest.skip("needs the cuda backend")
    t = 2**16
    with backend.use("cuda"), pytest.raises(RuntimeError, match="shared memory"):
        F.select_tokens(torch.randn(1, t, 1, device="cuda"), torch.randn(1, t, device="cuda"), 3)


@pytest.mark.gpu
def test_select_tokens_no_host_sync_on_cuda():
    import warnings

    hidden = torch.randn(4, 64, 32, device="cuda")
    logits = torch.randn(4, 64, device="cuda")
    active = torch.rand(4, 64, device="cuda") > 0.2
    ids = torch.randint(0, 6, (4, 64), device="cuda")
    keep = torch.tensor(KEEP, device="cuda")
    for name in [n for n in ("cuda", "triton") if n in backend.available("cuda")]:
        with backend.use(name):
            F.select_tokens(hidden, logits, 16, active=active, keep_ids=keep, input_ids=ids)  # warm-up
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("warn")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    sel = F.select_tokens(hidden, logits, 16, active=active, keep_ids=keep, input_ids=ids)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        assert sel.tokens.shape == (4, 16, 32), name
