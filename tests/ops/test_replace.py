"""mask_tokens, sample_replace and statistical_replace on every backend: identical ids across backends for
one seed, the masking contract, the sampling distribution (chi-square tests with power against a wrong
temperature, an off-by-one vocabulary and a biased RNG), edge cases, opcheck, torch.compile and bad input."""
import pytest
import torch
from scipy import stats

from electra_fast import backend, samplers
from electra_fast import functional as F
from electra_fast.ops import replace as ops
from electra_fast.reference import replace as reference
from tests.helpers import over_pairs

CLS, SEP, MASK, PAD = 1, 2, 4, 0
SPECIALS = (CLS, SEP, PAD)



def _batch(b, t, *, vocab=50, device="cpu", dtype=torch.int64, seed=0):
    """[CLS] tokens [SEP] [PAD]... rows of random lengths (row 1 all padding when b > 2), and the mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (b, t), generator=g)
    lengths = torch.randint(min(2, t), t + 1, (b,), generator=g)
    if b > 2:
        lengths[1] = 0
    pos = torch.arange(t)[None, :]
    am = pos < lengths[:, None]
    ids[:, 0] = CLS
    ids[torch.arange(b), (lengths - 1).clamp(min=0)] = SEP
    ids[~am] = PAD
    return ids.to(device, dtype), am.to(device)


def _logits(m, v, *, device="cpu", dtype=torch.float32, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(m, v, generator=g) * scale).to(device, dtype)


# --- mask_tokens -----------------------------------------------------------------------------------

@over_pairs()
@pytest.mark.parametrize("shape", [(5, 37), (1, 1), (3, 128)])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_mask_tokens_matches_reference(on, shape, dtype):
    device, _ = on
    ids, am = _batch(*shape, device=device, dtype=dtype)
    kw = dict(mask_prob=0.15, mask_token_id=MASK, special_token_ids=SPECIALS, mask_fraction=0.85, seed=11, offset=3)
    got = F.mask_tokens(ids, am, **kw)
    ref = reference.mask_tokens(ids, am, **kw)
    assert got[0].dtype == dtype and got[1].dtype == torch.bool
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    no_mask = F.mask_tokens(ids, None, **kw)  # no attention mask: every token real
    assert torch.equal(no_mask[1], reference.mask_tokens(ids, None, **kw)[1])


@over_pairs()
def test_mask_tokens_contract(on):
    device, name = on
    b, t = (6, 40) if name == "triton" else (64, 100)
    ids, am = _batch(b, t, device=device)
    ids[0, 3:6] = MASK  # an existing [MASK] is never chosen
    masked, is_masked = F.mask_tokens(ids, am, mask_token_id=MASK, special_token_ids=SPECIALS, seed=5)
    n_real = am.sum(1)
    cand = am & ~torch.isin(ids, torch.tensor(SPECIALS + (MASK,), device=device))
    k = torch.round(n_real.double() * 0.15).long().clamp(min=1).minimum(cand.sum(1))
    assert torch.equal(is_masked.sum(1), torch.where(cand.sum(1) > 0, k, 0))
    assert not (is_masked & ~cand).any()  # never pad, special or [MASK]
    assert is_masked[1].sum() == 0  # the all-padding row
    assert torch.equal(masked[~is_masked], ids[~is_masked])  # everything unchosen untouched
    shown = masked[is_masked]
    assert ((shown == MASK) | (shown == ids[is_masked])).all()


def test_mask_tokens_rate_split_and_uniformity():
    """Exact rate, the 85/15 split within 4 sigma, and every position equally likely (chi-square)."""
    b, t = 4000, 32
    ids = torch.randint(5, 100, (b, t))
    masked, is_masked = F.mask_tokens(ids, None, mask_token_id=MASK, seed=2)
    assert (is_masked.sum(1) == 5).all()  # round(32 * 0.15) = 5
    share = (masked[is_masked] == MASK).double().mean().item()
    sigma = (0.85 * 0.15 / is_masked.sum().item()) ** 0.5
    assert abs(share - 0.85) < 4 * sigma
    per_position = is_masked.sum(0).double()
    expected = per_position.sum() / t
    chi2 = ((per_position - expected) ** 2 / expected).sum().item()
    assert chi2 < stats.chi2.ppf(0.9999, t - 1), chi2
    # the test has power: a selection that prefers early positions fails it
    biased = per_position * torch.linspace(0.9, 1.1, t, dtype=torch.float64)
    biased *= per_position.sum() / biased.sum()
    assert ((biased - expected) ** 2 / expected).sum().item() > stats.chi2.ppf(0.9999, t - 1)


@over_pairs()
def test_mask_tokens_rounds_the_rounded_product_half_to_even(on):
    """k = round_half_even(fl(n_real * 0.15)): at n_real = 10, 30, 50, ..., 130 the double product is exactly
    an integer + 1/2 while the exact product is just below it, so a backend that fused the product into the
    rounding (a multiply-add) would mask one position fewer at 10, 50, 90, 130, and one that took mask_prob
    as float32 (0.15f is above 0.15) one more at 30, 70, 110."""
    device, _ = on
    lengths = [10, 30, 50, 70, 90, 110, 130]
    expected = [2, 4, 8, 10, 14, 16, 20]
    assert [round(n * 0.15) for n in lengths] == expected
    ids = torch.full((len(lengths), max(lengths)), 7, dtype=torch.int64, device=device)
    am = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).to(device)
    _, is_masked = F.mask_tokens(ids, am, mask_prob=0.15, mask_token_id=MASK, seed=0)
    assert is_masked.sum(1).tolist() == expected


@over_pairs()
def test_mask_tokens_seed_and_offset_change_the_draw(on):
    device, _ = on
    ids, am = _batch(4, 64, device=device)
    a = F.mask_tokens(ids, am, mask_token_id=MASK, seed=1)[1]
    assert torch.equal(a, F.mask_tokens(ids, am, mask_token_id=MASK, seed=1)[1])
    assert not torch.equal(a, F.mask_tokens(ids, am, mask_token_id=MASK, seed=2)[1])
    assert not torch.equal(a, F.mask_tokens(ids, am, mask_token_id=MASK, seed=1, offset=1)[1])


# --- sample_replace ----------------------------------------------------------------------------------

def _masked_batch(device, b=4, t=30, vocab=50, seed=0, dtype=torch.int64):
    ids, am = _batch(b, t, vocab=vocab, device=device, dtype=dtype, seed=seed)
    _, is_masked = F.mask_tokens(ids, am, mask_token_id=MASK, special_token_ids=SPECIALS, seed=seed + 1)
    return ids, is_masked


@over_pairs()
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
@pytest.mark.parametrize("disallow", [False, True])
def test_sample_replace_matches_reference(on, dtype, temperature, disallow):
    device, name = on
    vocab = 1537 if name != "triton" else 300  # not a multiple of any block
    ids, is_masked = _masked_batch(device, vocab=vocab)
    logits = _logits(int(is_masked.sum()), vocab, device=device, dtype=dtype)
    logits[:, ::7] = float("-inf")
    kw = dict(temperature=temperature, disallow_original=disallow, seed=9, offset=4)
    got = F.sample_replace(logits, ids, is_masked, **kw)
    ref = reference.sample_replace(logits, ids, is_masked, **kw)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    assert torch.equal(got[1], got[0] != ids)
    assert torch.equal(got[0][~is_masked], ids[~is_masked])
    assert not (got[0][is_masked] % 7 == 0).any()  # -inf logits are never drawn
    if disallow:
        assert got[1][is_masked].all()


@over_pairs()
@pytest.mark.parametrize("disallow", [False, True])
def test_sample_replace_never_draws_a_zero_weight(on, disallow):
    """Finite logits whose weight exp((x - max) / T) underflows to 0 are never drawn (nor is an excluded
    original), whatever the uniform and whatever order a backend sums in: a sample needs w > 0."""
    device, name = on
    vocab = 1537 if name != "triton" else 300
    ids, is_masked = _masked_batch(device, vocab=vocab, seed=3)
    logits = _logits(int(is_masked.sum()), vocab, device=device, seed=3)
    logits[:, 1::3] = -1e4
    kw = dict(temperature=0.7, disallow_original=disallow, seed=9, offset=4)
    got, replaced = F.sample_replace(logits, ids, is_masked, **kw)
    assert not (got[is_masked] % 3 == 1).any()
    if disallow:
        assert replaced[is_masked].all()
    assert torch.equal(got, reference.sample_replace(logits, ids, is_masked, **kw)[0])


@over_pairs()
def test_sample_replace_int32_ids_and_many_blocks(on):
    device, name = on
    vocab = 5000 if name != "triton" else 2100  # spans several CPU chunks / two Triton blocks
    ids, is_masked = _masked_batch(device, b=2, t=12, vocab=vocab, dtype=torch.int32)
    logits = _logits(int(is_masked.sum()), vocab, device=device, scale=0.5)
    got = F.sample_replace(logits, ids, is_masked, seed=3)
    assert got[0].dtype == torch.int32
    assert torch.equal(got[0], reference.sample_replace(logits, ids, is_masked, temperature=1.0,
                                                        disallow_original=False, seed=3, offset=0)[0])


@pytest.mark.parametrize("name", ["reference", "cpp"])
def test_sample_replace_distribution(name):
    """Frequencies of one row's samples match softmax(logits / T); the same test rejects T * 1.15, an id
    off by one and a biased uniform, so it can fail."""
    if name not in backend.available("cpu"):
        pytest.skip(f"{name} not available")
    vocab, draws, temperature = 9, 60000, 0.8
    row = torch.tensor([1.0, 0.5, -1.0, 2.0, 0.0, float("-inf"), 1.5, -0.5, 0.3])
    logits = row.expand(draws, vocab).contiguous()
    ids = torch.zeros(1, draws, dtype=torch.int64)
    is_masked = torch.ones(1, draws, dtype=torch.bool)
    with backend.use(name):
        out, _ = F.sample_replace(logits, ids, is_masked, temperature=temperature, seed=123)
    counts = torch.bincount(out[0], minlength=vocab).double()
    assert counts[5] == 0  # the -inf token

    def chi2(p):
        keep = p > 0
        e = p[keep] * draws
        return (((counts[keep] - e) ** 2) / e).sum().item()

    limit = stats.chi2.ppf(0.9999, vocab - 2)
    p = torch.softmax(row.double() / temperature, 0)
    assert chi2(p) < limit
    assert chi2(torch.softmax(row.double() / (temperature * 1.15), 0)) > limit  # wrong temperature
    assert chi2(torch.roll(p, 1)) > limit  # off by one
    u = torch.rand(draws, dtype=torch.float64) ** 1.1  # a biased uniform through the same inverse CDF
    biased = torch.bincount(torch.searchsorted(p.cumsum(0), u), minlength=vocab).double()
    assert (((biased - p * draws) ** 2)[p > 0] / (p * draws)[p > 0]).sum().item() > limit


@over_pairs()
def test_sample_replace_greedy_is_argmax(on):
    device, _ = on
    ids, is_masked = _masked_batch(device, vocab=64)
    logits = _logits(int(is_masked.sum()), 64, device=device)
    logits[:, 10] = logits.max(1).values  # ties: the first maximum wins
    out, _ = F.sample_replace(logits, ids, is_masked, temperature=0.0, seed=0)
    assert torch.equal(out[is_masked], logits.argmax(1).to(out.dtype))


@over_pairs()
def test_sample_replace_edge_cases(on):
    device, _ = on
    ids, is_masked = _masked_batch(device, vocab=50)
    m = int(is_masked.sum())
    # V = 1: every sample is id 0
    small = ids.clamp(max=0)
    out, rep = F.sample_replace(torch.randn(m, 1, device=device), small, is_masked, seed=1)
    assert (out[is_masked] == 0).all() and not rep.any()
    # M = 0: nothing masked, nothing changes
    none = torch.zeros_like(is_masked)
    out, rep = F.sample_replace(torch.randn(0, 50, device=device), ids, none, seed=1)
    assert torch.equal(out, ids) and not rep.any()
    # an all-padding batch has nothing masked either
    pad_ids = torch.zeros(2, 8, dtype=torch.int64, device=device)
    _, pad_masked = F.mask_tokens(pad_ids, torch.zeros_like(pad_ids), mask_token_id=MASK, seed=0)
    assert not pad_masked.any()
    # a single finite logit is always drawn
    logits = torch.full((m, 50), float("-inf"), device=device)
    logits[:, 17] = 3.0
    out, _ = F.sample_replace(logits, ids, is_masked, seed=1)
    assert (out[is_masked] == 17).all()


@over_pairs()
def test_sample_replace_errors_detected_in_kernel(on):
    device, _ = on
    ids, is_masked = _masked_batch(device, vocab=50)
    m = int(is_masked.sum())
    logits = _logits(m, 50, device=device)
    nan = logits.clone()
    nan[2, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN or \\+inf in 1 rows \\(first: row 2\\)"):
        F.sample_replace(nan, ids, is_masked, seed=0)
    inf = logits.clone()
    inf[1, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        F.sample_replace(inf, ids, is_masked, seed=0)
    empty = logits.clone()
    empty[3] = float("-inf")
    with pytest.raises(ValueError, match="no finite logit"):
        F.sample_replace(empty, ids, is_masked, seed=0)
    only_orig = torch.full_like(logits, float("-inf"))
    only_orig[torch.arange(m), ids[is_masked]] = 0.0
    with pytest.raises(ValueError, match="disallow_original"):
        F.sample_replace(only_orig, ids, is_masked, seed=0, disallow_original=True)
    # validate=False: no host sync, the bad rows keep their original token
    out, rep = F.sample_replace(nan, ids, is_masked, seed=0, validate=False)
    assert out[is_masked][2] == ids[is_masked][2] and not rep[is_masked][2]


@over_pairs()
def test_sample_replace_bad_input(on):
    device, _ = on
    ids, is_masked = _masked_batch(device, vocab=50)
    m = int(is_masked.sum())
    logits = _logits(m, 50, device=device)
    with pytest.raises(ValueError, match="one row per masked position: is_masked marks"):
        F.sample_replace(logits[:-1], ids, is_masked, seed=0)
    big = ids.clone()
    big[0, 0] = 50
    with pytest.raises(ValueError, match="input_ids must lie in \\[0, V\\)"):
        F.sample_replace(logits, big, is_masked, seed=0)
    neg = ids.clone()
    neg[0, 0] = -1
    with pytest.raises(ValueError, match="ids outside"):
        F.sample_replace(logits, neg, is_masked, seed=0)
    with pytest.raises(TypeError, match="input_ids must have dtype"):
        F.sample_replace(logits, ids.float(), is_masked, seed=0)
    with pytest.raises(TypeError, match="logits must have dtype"):
        F.sample_replace(logits.long(), ids, is_masked, seed=0)
    with pytest.raises(ValueError, match="logits must be 2-D"):
        F.sample_replace(logits[0], ids, is_masked, seed=0)
    with pytest.raises(ValueError, match="is_masked must have the shape"):
        F.sample_replace(logits, ids, is_masked[:, 1:], seed=0)
    with pytest.raises(ValueError, match="temperature"):
        F.sample_replace(logits, ids, is_masked, seed=0, temperature=-1.0)
    with pytest.raises(TypeError, match="seed"):
        F.sample_replace(logits, ids, is_masked, seed=1.5)
    with pytest.raises(ValueError, match="on meta but logits"):
        F.sample_replace(logits, ids.to("meta"), is_masked, seed=0)


@pytest.mark.gpu
def test_cuda_kernels_reject_tensors_on_another_device():
    """The raw CUDA ops check that every tensor argument is on the device they run on."""
    if "cuda" not in backend.available("cuda"):
        pytest.skip("the CUDA kernels are not built")
    ids, is_masked = _masked_batch("cuda")
    logits = _logits(int(is_masked.sum()), 50, device="cuda")
    with pytest.raises(RuntimeError, match="is_masked must be on cuda"):
        torch.ops.electra_fast_C.sample_replace(logits, ids, is_masked.cpu(), 1.0, False, 1, 0)
    with pytest.raises(RuntimeError, match="special_token_ids must be on cuda"):
        torch.ops.electra_fast_C.mask_tokens(ids, None, torch.tensor(SPECIALS), 0.15, MASK, 0.85, 1, 0)


def test_mask_tokens_bad_input():
    ids, am = _batch(2, 8)
    with pytest.raises(TypeError, match="mask_token_id"):
        F.mask_tokens(ids, am, mask_token_id=-3, seed=0)
    with pytest.raises(ValueError, match="mask_prob must be in"):
        F.mask_tokens(ids, am, mask_token_id=MASK, mask_prob=0.0, seed=0)
    with pytest.raises(ValueError, match="mask_fraction must be in"):
        F.mask_tokens(ids, am, mask_token_id=MASK, mask_fraction=1.5, seed=0)
    with pytest.raises(ValueError, match="input_ids must be 2-D"):
        F.mask_tokens(ids[0], None, mask_token_id=MASK, seed=0)
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        F.mask_tokens(ids, am[:, :3], mask_token_id=MASK, seed=0)
    with pytest.raises(TypeError, match="special_token_ids"):
        F.mask_tokens(ids, am, mask_token_id=MASK, special_token_ids=("a",), seed=0)


# --- statistical_replace -------------------------------------------------------------------------------

def _samplers(vocab):
    counts = torch.arange(vocab, dtype=torch.float64) % 13
    return [samplers.UniformSampler(vocab, exclude_ids=SPECIALS + (MASK,)),
            samplers.UnigramSampler.from_counts(counts, exclude_ids=SPECIALS, power=0.75),
            samplers.ClusterSampler.from_frequencies(counts + 1, num_clusters=6, exclude_ids=SPECIALS)]


@over_pairs()
def test_statistical_replace_matches_reference(on):
    device, _ = on
    ids, am = _batch(5, 33, vocab=60, device=device)
    for sampler in _samplers(60):
        sampler.to(device)
        corrupted, replaced, is_masked = F.statistical_replace(ids, am, sampler, special_token_ids=SPECIALS, seed=7,
                                                                offset=2)
        ref_masked = reference.mask_tokens(ids, am, mask_prob=0.15, mask_token_id=-1, special_token_ids=SPECIALS,
                                           mask_fraction=0.0, seed=7, offset=2)[1]
        assert torch.equal(is_masked, ref_masked)
        ref = reference.statistical_fill(ids, is_masked, *sampler.tables(), seed=7, offset=2)
        assert torch.equal(corrupted, ref[0]) and torch.equal(replaced, ref[1])
        assert torch.equal(corrupted[~is_masked], ids[~is_masked])
        drawn = corrupted[is_masked]
        assert not torch.isin(drawn, torch.tensor(SPECIALS, device=device)).any()


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_kernels_match_reference_past_the_parallel_grain(threads):
    """256 x 512 positions: mask_tokens and statistical_fill split the batch across threads (below 16384 and
    131072 positions they run on one); the ids do not depend on it."""
    if "cpp" not in backend.available("cpu"):
        pytest.skip("the C++ kernels are not built")
    ids, am = _batch(256, 512, vocab=60)
    kw = dict(mask_prob=0.15, mask_token_id=MASK, special_token_ids=SPECIALS, mask_fraction=0.85, seed=5, offset=1)
    sampler = _samplers(60)[1]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with backend.use("cpp"):
            got = F.mask_tokens(ids, am, **kw)
            corrupted, replaced, is_masked = F.statistical_replace(ids, am, sampler, special_token_ids=SPECIALS,
                                                                    seed=5, offset=1)
    finally:
        torch.set_num_threads(before)
    ref = reference.mask_tokens(ids, am, **kw)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    assert torch.equal(is_masked, reference.mask_tokens(ids, am, **{**kw, "mask_token_id": -1,
                                                                  "mask_fraction": 0.0})[1])
    ref_fill = reference.statistical_fill(ids, is_masked, *sampler.tables(), seed=5, offset=1)
    assert torch.equal(corrupted, ref_fill[0]) and torch.equal(replaced, ref_fill[1])


def test_statistical_replace_bad_input():
    ids, am = _batch(2, 8, vocab=50)
    with pytest.raises(TypeError, match="sampler must be"):
        F.statistical_replace(ids, am, object(), seed=0)
    with pytest.raises(ValueError, match="sampler.vocab_size"):
        F.statistical_replace(ids, am, samplers.UniformSampler(20), seed=0)
    negative = ids.clone()
    negative[0, 1] = -1
    with pytest.raises(ValueError, match="found 1 ids outside"):
        F.statistical_replace(negative, am, samplers.UniformSampler(50), seed=0)
    empty = F.statistical_replace(ids[:0], am[:0], samplers.UniformSampler(50), seed=0)
    assert all(t.shape == (0, 8) for t in empty)
    with pytest.raises(ValueError, match="on meta but input_ids"):
        F.statistical_replace(ids, am, samplers.UniformSampler(50).to("meta"), seed=0)


# --- opcheck and torch.compile -------------------------------------------------------------------------

@over_pairs()
def test_opcheck(on):
    device, _ = on
    ids, am = _batch(3, 20, device=device)
    specials = torch.tensor(SPECIALS, device=device)
    torch.library.opcheck(ops.mask_tokens_op, (ids, am, specials, 0.15, MASK, 0.85, 1, 0))
    ids, is_masked = _masked_batch(device)
    logits = _logits(int(is_masked.sum()), 50, device=device)
    torch.library.opcheck(ops.sample_replace_op, (logits, ids, is_masked, 1.0, False, 1, 0))
    tables = samplers.UniformSampler(50, exclude_ids=SPECIALS).to(device).tables()
    torch.library.opcheck(ops.statistical_fill_op, (ids, is_masked, *tables, 1, 0))


@over_pairs()
def test_torch_compile_fullgraph(on):
    device, name = on
    if name == "reference":
        pytest.skip("the op is opaque to the compiler: the reference adds nothing but compile time here")
    ids, am = _batch(3, 24, device=device)
    sampler = samplers.ClusterSampler.from_frequencies(torch.arange(50.0) + 1, 4, exclude_ids=SPECIALS).to(device)

    def corrupt(ids, am, logits):
        masked, is_masked = F.mask_tokens(ids, am, mask_token_id=MASK, special_token_ids=SPECIALS, seed=3)
        corrupted, replaced = F.sample_replace(logits, ids, is_masked, seed=4)
        stat = F.statistical_replace(ids, am, sampler, special_token_ids=SPECIALS, seed=5)
        return masked, corrupted, replaced, stat[0]

    _, is_masked = F.mask_tokens(ids, am, mask_token_id=MASK, special_token_ids=SPECIALS, seed=3)
    logits = _logits(int(is_masked.sum()), 50, device=device)
    eager = corrupt(ids, am, logits)
    compiled = torch.compile(corrupt, fullgraph=True, dynamic=False)(ids, am, logits)
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)
