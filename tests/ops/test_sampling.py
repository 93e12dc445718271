"""The row sampler shared by sample_replace and generator_head (csrc/include/electra_fast/sampling.h): the same
id on every backend by construction. Near ties (u * Z within NEAR_TIE * Z of a CDF boundary, where an ulp of exp
decides) are built on purpose and must be decided from fp64 weights by every backend alike; random rows at a
BERT vocabulary must agree row for row."""
import numpy as np
import pytest
import torch

from electra_fast import backend
from electra_fast import functional as F
from electra_fast.random import uniform
from electra_fast.reference.sampling import NEAR_TIE, inverse_cdf_sample

SEED, OFFSET = 11, 3


def _cpu_backends():
    return [name for name in ("reference", "cpp", "triton") if name in backend.available("cpu")]


def _inv_t(temperature: float) -> float:
    return float(np.float32(1.0 / temperature))


def _fp32_cdf(x: np.ndarray, inv_t: float):
    """The contract's fp32 weights of one row and their fp64 prefix sums."""
    w = np.exp((x - x.max()) * np.float32(inv_t)).astype(np.float64)
    return w, np.cumsum(w)


def near_tie_rows(m: int, v: int, temperature: float, *, seed: int):
    """[m, v] float32 logits (std 3) with row r's target u_r * Z moved onto a boundary of its fp32 CDF, to within
    1e-11 * Z: the lower boundary S_{j-1} of the token j whose interval holds the target is raised or lowered by
    changing the weight of an earlier token, first a large one, then ever smaller ones (the rounding of an fp32
    logit moves its weight by ~5e-7 of itself, so each round leaves that much of the last change). Which side
    of the boundary the target then falls on is decided by the last ulp of exp."""
    g = torch.Generator().manual_seed(seed)
    u = uniform(m, seed=SEED, offset=OFFSET).double().numpy()
    inv_t = _inv_t(temperature)
    rows = []
    while len(rows) < m:
        r = len(rows)
        x = (torch.randn(v, generator=g) * 3.0).numpy()
        w, cdf = _fp32_cdf(x, inv_t)
        j = int(np.searchsorted(cdf, u[r] * cdf[-1]))
        top = int(x.argmax())
        for _ in range(12):
            w, cdf = _fp32_cdf(x, inv_t)
            below = cdf[j - 1] if j else 0.0
            gap = u[r] * cdf[-1] - below
            if abs(gap) < 1e-11 * cdf[-1]:
                rows.append(x)
                break
            delta = gap / (1.0 - u[r])  # S_{j-1} + d = u * (Z + d)
            fits = np.flatnonzero((np.arange(v) < j) & (np.arange(v) != top) & (w + delta > w / 2) &
                                  (w + delta < 0.5))
            if fits.size == 0:
                break
            k = fits[np.argmin(w[fits])]  # the finest step that can take the change
            x[k] = np.float32(x[k] + np.log((w[k] + delta) / w[k]) / inv_t)
    return torch.from_numpy(np.stack(rows))


def fp64_decision(x: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """The contract's fp64 rule, in numpy: the first j with S64_j >= u * Z64."""
    inv_t = _inv_t(temperature)
    out = []
    for row, ur in zip(x.numpy(), u.double().numpy()):
        d = (row - row.max()).astype(np.float32)
        cdf = np.cumsum(np.exp(d.astype(np.float64) * inv_t))
        out.append(int(np.searchsorted(cdf, ur * cdf[-1])))
    return torch.tensor(out)


def _replace(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    m = logits.shape[0]
    ids = torch.zeros(1, m, dtype=torch.int64)
    with torch.no_grad():
        corrupted, _ = F.sample_replace(logits, ids, torch.ones(1, m, dtype=torch.bool), temperature=temperature,
                                        seed=SEED, offset=OFFSET)
    return corrupted[0]


@pytest.mark.parametrize("temperature", [1.0, 0.85, 1.7])
def test_built_near_ties_are_near_ties_of_the_fp32_rule(temperature):
    """The construction works: every row's target is within NEAR_TIE * Z of a boundary of the fp32 CDF."""
    x = near_tie_rows(16, 3000, temperature, seed=0)
    u = uniform(16, seed=SEED, offset=OFFSET).double().numpy()
    for row, ur in zip(x.numpy(), u):
        _, cdf = _fp32_cdf(row, _inv_t(temperature))
        target = ur * cdf[-1]
        assert np.abs(cdf - target).min() < 1e-10 * cdf[-1] < NEAR_TIE * cdf[-1]


@pytest.mark.parametrize("temperature", [1.0, 0.85, 1.7])
def test_near_ties_are_decided_in_fp64_on_every_backend(temperature):
    """At a BERT vocabulary, rows whose target sits on a CDF boundary: every backend returns the fp64 rule's id
    (without the fp64 step, an ulp of exp sends about half of them to the neighbouring id)."""
    m = 16
    x = near_tie_rows(m, 30522, temperature, seed=1)
    expected = fp64_decision(x, uniform(m, seed=SEED, offset=OFFSET), temperature)
    for name in _cpu_backends():
        with backend.use(name):
            ids = _replace(x, temperature)
        differ = (ids != expected).nonzero().flatten().tolist()
        assert not differ, f"{name}: rows {differ} of {m} differ from the fp64 decision"


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_generator_head_decides_near_ties_as_sample_replace(temperature):
    """The fused head draws the same ids as sample_replace on near-tie rows: hidden = the logits and weight = the
    identity, so that every backend's GEMM gives those logits bit for bit (one product by 1, the rest zeros)."""
    m, v = 12, 1000
    x = near_tie_rows(m, v, temperature, seed=2)
    weight = torch.eye(v)
    targets = torch.zeros(m, dtype=torch.int64)
    expected = fp64_decision(x, uniform(m, seed=SEED, offset=OFFSET), temperature)
    for name in _cpu_backends():
        with torch.no_grad(), backend.use(name):
            assert torch.equal(x @ weight.t(), x)
            _, samples = F.generator_head(x, weight, None, targets, temperature=temperature, seed=SEED,
                                          offset=OFFSET)
            replaced = _replace(x, temperature)
        assert torch.equal(samples, expected), f"{name}: head {samples.tolist()} vs fp64 {expected.tolist()}"
        assert torch.equal(replaced, expected), f"{name}: sample_replace {replaced.tolist()}"


def test_same_ids_on_every_backend_at_scale():
    """Random rows at V = 30522 (logits std 3, temperatures 0.55-2.0): cpp and the reference agree on every one
    of 4,096 rows; the Triton interpreter on 16 of them."""
    v, chunk = 30522, 1024
    names = _cpu_backends()
    for c, temperature in enumerate(np.linspace(0.55, 2.0, 4)):
        logits = torch.randn(chunk, v, generator=torch.Generator().manual_seed(100 + c)) * 3.0
        u = uniform(chunk, seed=SEED, offset=OFFSET)
        expected = inverse_cdf_sample(logits, u, float(temperature))
        for name in names:
            rows = slice(None) if name != "triton" else slice(0, 4)
            with backend.use(name):
                ids = _replace(logits[rows], float(temperature))
            differ = (ids != expected[rows]).nonzero().flatten().tolist()
            assert not differ, f"{name} at T = {temperature:.3f}: rows {differ[:10]} ({len(differ)}) differ"
