"""The one RNG (electra_fast.random, Philox4x32-10): known answers, bit-identical backends, uniformity."""
import math

import pytest
import torch

import electra_fast._C  # noqa: F401  (registers torch.ops.electra_fast_C)
from electra_fast import backend, random
from electra_fast.ops import _dispatch as dispatch
from electra_fast.reference import random as ref_random
from tests.helpers import device_backends, pair_id

PAIRS = device_backends()
U64 = 2**64


def _s64(x: int) -> int:
    """A uint64 as the int64 the raw kernels take."""
    return x - U64 if x >= 2**63 else x


def _hex(words) -> str:
    return " ".join(f"{int(w) & 0xFFFFFFFF:08x}" for w in words)


# Random123's known-answer vectors for philox4x32-10, as (ctr0..ctr3, key0, key1) -> words.
# Layout (electra_fast/random.py): ctr = (lo32(index), hi32(index), lo32(offset), hi32(offset)),
# key = (lo32(seed), hi32(seed)); so index = ctr1:ctr0, offset = ctr3:ctr2, seed = key1:key0.
KAT = [
    ((0, 0, 0, 0), (0, 0), "6627e8d5 e169c58d bc57ac4c 9b00dbd8"),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), "408f276d 41c83b0e a20bc7c6 6d5451fd"),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     "d16cfe09 94fdcceb 5001e420 24126ea1"),
]


def _kat_stream(ctr, key):
    index = ctr[0] | ctr[1] << 32
    offset = ctr[2] | ctr[3] << 32
    seed = key[0] | key[1] << 32
    return seed, offset, index


def _raw_words(name: str, device: str, seed: int, offset: int, start: int, n: int) -> torch.Tensor:
    """[n, 4] int64 words straight from a backend's kernel (full uint64 seed/offset range)."""
    if name == "reference":
        return ref_random.philox_words(n, seed=seed, offset=offset, start=start, device=device)
    out = torch.empty(n, 4, dtype=torch.int32, device=device)
    dispatch.kernel(random.PHILOX_WORDS, name)(out, _s64(seed), _s64(offset), _s64(start))
    return out.to(torch.int64) & 0xFFFFFFFF


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
@pytest.mark.parametrize("ctr,key,expected", KAT, ids=["zeros", "ones", "pi"])
def test_known_answers(pair, ctr, key, expected):
    device, name = pair
    seed, offset, index = _kat_stream(ctr, key)
    assert _hex(_raw_words(name, device, seed, offset, index, 1)[0]) == expected


def test_reference_rounds_directly():
    # the round function alone, with the counter words given explicitly (no layout involved)
    for ctr, key, expected in KAT:
        counter = tuple(torch.tensor([c], dtype=torch.int64) for c in ctr)
        words = ref_random.philox4x32_10(counter, key[0] | key[1] << 32)
        assert _hex(words[0]) == expected


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_public_api_known_answer(pair):
    device, name = pair
    with backend.use(name):
        words = random.philox_words(2, seed=0, offset=0, device=device)
    assert _hex(words[0].cpu()) == KAT[0][2]
    # the same stream, counter 1, agrees with the reference
    assert torch.equal(words.cpu(), ref_random.philox_words(2, seed=0, offset=0))


STREAMS = [
    dict(seed=0, offset=0, start=0),
    dict(seed=1234, offset=7, start=2**32 - 37),  # index carries into hi32 inside the range
    dict(seed=2**63 - 1, offset=2**63 - 1, start=2**40 + 3),  # seeds/offsets near 2^63, large index
    dict(seed=2**62 + 12345, offset=2**33 + 1, start=2**63 - 50),  # index crossing 2^63
    dict(seed=0xFFFFFFFF, offset=0xFFFFFFFF, start=U64 - 20),  # index wrapping modulo 2^64
]


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
@pytest.mark.parametrize("stream", STREAMS, ids=lambda s: f"seed{s['seed']:x}-off{s['offset']:x}-start{s['start']:x}")
def test_words_bit_identical_across_backends(pair, stream):
    device, name = pair
    n = 100
    got = _raw_words(name, device, stream["seed"], stream["offset"], stream["start"], n).cpu()
    expected = ref_random.philox_words(n, **stream)
    assert torch.equal(got, expected)


def test_index_carry_uses_hi_word():
    # counters 2^32 - 1 and 2^32 must be (lo, hi) = (ffffffff, 0) and (0, 1)
    words = ref_random.philox_words(2, seed=5, offset=9, start=2**32 - 1)
    for i, (lo, hi) in enumerate([(0xFFFFFFFF, 0), (0, 1)]):
        counter = tuple(torch.tensor([c], dtype=torch.int64) for c in (lo, hi, 9, 0))
        assert torch.equal(words[i], ref_random.philox4x32_10(counter, 5)[0])


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
@pytest.mark.parametrize("seed,offset", [(0, 0), (42, 3), (2**63 - 1, 2**63 - 1), (2**32 + 1, 2**32 - 1)])
def test_uniforms_bit_identical_across_backends(pair, seed, offset):
    device, name = pair
    n = 5000 if name != "triton" else 3000
    with backend.use(name):
        got = random.uniform(n, seed=seed, offset=offset, device=device).cpu()
    expected = ref_random.uniform(n, seed=seed, offset=offset)
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)
    # uniform i is word 0 of counter i
    assert torch.equal(expected, ref_random.word_to_uniform(ref_random.philox_words(n, seed=seed, offset=offset)[:, 0]))


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_uniform_empty(pair):
    device, name = pair
    with backend.use(name):
        assert random.uniform(0, seed=1, device=device).shape == (0,)


def test_uniform_extremes_strictly_inside_unit_interval():
    words = torch.tensor([0, 1, 511, 512, 0xFFFFFFFF], dtype=torch.int64)
    u = ref_random.word_to_uniform(words)
    assert u[0].item() == 2.0**-24
    assert u[-1].item() == 1 - 2.0**-24
    assert bool((u > 0).all() and (u < 1).all())
    assert torch.log(u).isfinite().all() and torch.log(-torch.log(u)).isfinite().all()


def test_uniforms_strictly_inside_unit_interval_large_sample():
    u = random.uniform(2_000_000, seed=3, offset=11)
    assert u.min().item() > 0 and u.max().item() < 1
    # every value is an odd multiple of 2^-24
    k = u.double() * 2**24
    assert torch.equal(k, k.round()) and bool((k.long() % 2 == 1).all())


def _chi_square(u: torch.Tensor, bins: int) -> float:
    counts = torch.histc(u.double(), bins=bins, min=0.0, max=1.0)
    expected = u.numel() / bins
    return float(((counts - expected) ** 2 / expected).sum())


def _ks(u: torch.Tensor) -> float:
    x = u.double().sort().values
    n = x.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - x, x - (i - 1) / n).max())


# critical values at significance 1e-4 (z = 3.719): chi-square with k = 255 degrees of freedom by the
# Wilson-Hilferty approximation (~347.7); Kolmogorov-Smirnov sqrt(-ln(alpha / 2) / 2) / sqrt(n)
_Z = 3.719
CHI2_255_CRIT = 255 * (1 - 2 / (9 * 255) + _Z * math.sqrt(2 / (9 * 255))) ** 3


def _ks_crit(n: int) -> float:
    return math.sqrt(-math.log(1e-4 / 2) / 2) / math.sqrt(n)


def test_uniformity_chi_square_and_ks():
    n = 1_000_000
    u = random.uniform(n, seed=20240601, offset=1)
    assert _chi_square(u, 256) < CHI2_255_CRIT
    assert _ks(u) < _ks_crit(n)
    # the tests have the power to catch a slightly biased generator with the same sample size
    biased = u ** 1.01
    assert _ks(biased) > _ks_crit(n)
    assert _chi_square(biased, 256) > CHI2_255_CRIT
    coarse = (u * 200).floor() / 200 + 1 / 400  # only 200 distinct values
    assert _chi_square(coarse, 256) > CHI2_255_CRIT


def test_word_bits_balanced():
    words = random.philox_words(200_000, seed=99, offset=5)
    n = words.shape[0] * 4
    bits = torch.stack([(words >> b) & 1 for b in range(32)]).flatten(1).sum(1).double()
    # each bit is 1 with probability 1/2: allow 5 standard deviations
    assert bool(((bits - n / 2).abs() < 5 * math.sqrt(n / 4)).all())


def test_streams_differ_across_seeds_and_offsets():
    n = 10_000
    base = random.uniform(n, seed=7, offset=0)
    for other in (random.uniform(n, seed=8, offset=0), random.uniform(n, seed=7, offset=1),
                  random.uniform(n, seed=7 + 2**32, offset=0), random.uniform(n, seed=7, offset=2**32)):
        assert (other == base).float().mean() < 0.01
        assert abs(torch.corrcoef(torch.stack([base, other]))[0, 1]) < 0.05
    # the same (seed, offset) reproduces, and a stream's prefix does not depend on its length
    assert torch.equal(base, random.uniform(n, seed=7, offset=0))
    assert torch.equal(base[:100], random.uniform(100, seed=7, offset=0))


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=2**63), ValueError, "seed"),
    (dict(seed=1, offset=-5), ValueError, "offset"),
    (dict(seed=1, offset=2**63), ValueError, "offset"),
    (dict(seed=1.0), TypeError, "seed"),
    (dict(seed=True), TypeError, "seed"),
    (dict(seed="1"), TypeError, "seed"),
    (dict(seed=torch.tensor(1)), TypeError, "seed"),
    (dict(seed=1, offset=0.5), TypeError, "offset"),
])
def test_bad_seed_or_offset(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        random.uniform(4, **kwargs)
    with pytest.raises(exc, match=word):
        random.philox_words(4, **kwargs)


def test_negative_n():
    with pytest.raises(ValueError, match="n must be"):
        random.uniform(-1, seed=0)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["cuda", "triton", "reference"])
def test_cuda_bit_identical(name):
    if name not in backend.available("cuda"):
        pytest.skip(f"{name} not available on cuda")
    for stream in STREAMS:
        got = _raw_words(name, "cuda", stream["seed"], stream["offset"], stream["start"], 4096).cpu()
        assert torch.equal(got, ref_random.philox_words(4096, **stream))
    with backend.use(name):
        u = random.uniform(1 << 20, seed=5, offset=2**63 - 1, device="cuda").cpu()
    assert torch.equal(u, ref_random.uniform(1 << 20, seed=5, offset=2**63 - 1))
