"""Tiny configs and batches for the model tests (fast on 2 CPU cores)."""
import pytest
import torch

from electra_fast.models import ElectraConfig

VOCAB = 120
CLS, SEP, MASK, PAD = 1, 2, 3, 0


def tiny_config(**overrides) -> ElectraConfig:
    base = dict(vocab_size=VOCAB, num_hidden_layers=4, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                embedding_size=16, generator_size_fraction=0.5, max_position_embeddings=64,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                pad_token_id=PAD, cls_token_id=CLS, sep_token_id=SEP, mask_token_id=MASK)
    return ElectraConfig.preset("tiny", **{**base, **overrides})


def batch(b: int = 4, t: int = 24, seed: int = 0, pad=(0, 5, 0, 9)):
    """ids [b,t] with [CLS] first and [SEP] last among each row's real tokens; row i has pad[i] padding tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.int64)
    for i in range(b):
        n = t - pad[i % len(pad)]
        ids[i, 0] = CLS
        ids[i, n - 1] = SEP
        ids[i, n:] = PAD
        mask[i, n:] = 0
    return ids, mask


def grads(model):
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def assert_gradients_match(model, mask, run, reference):
    """The weights' gradients of sum(logits) + sum(hidden^2) over the real tokens agree between `run` and
    `reference` (each () -> (hidden [B,T,H], logits [B,T]))."""
    real = mask.bool()
    results = []
    for fn in (run, reference):
        model.zero_grad(set_to_none=True)
        hidden, logits = fn()
        (logits[real].sum() + hidden[real].square().sum()).backward()
        results.append(grads(model))
    for name, g in results[1].items():
        torch.testing.assert_close(results[0][name], g, rtol=1e-3, atol=1e-5, msg=name)


def train(model, ids, mask, steps: int, lr: float = 3e-3, **kw):
    """Adam on a fixed batch with a fixed corruption; returns the losses."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        out = model(ids, mask, seed=7, offset=0, step=step, **kw)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    return losses


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine the spinning
    workers of a second thread make a 30 ms step take a second."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
