"""Token-level early exit in the discriminator, threshold policy: the nested gather/scatter path against a
per-row boolean-indexing reference, threshold = 1.0 equivalence, warm-up, specials, empty levels.
The budget policy is tested in test_budget_exit.py."""
import math

import pytest
import torch

from electra_fast.models import EarlyExitConfig, ElectraForPretraining
from electra_fast.models.encoder import key_mask

from .helpers import (CLS, SEP, assert_gradients_match, batch, grads, one_thread, tiny_config,  # noqa: F401
                      train)


def exit_config(**kw):
    return tiny_config(early_exit=EarlyExitConfig(**{"exit_layers": [1, 2], "threshold": 0.9, **kw}))


def confident(model, std=1.0, seed=0):
    """Random exit heads with large logits, so that a good share of the tokens exits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.discriminator.named_parameters():
            if name.startswith("exit_heads.") and name.endswith("weight"):
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def reference_discriminator(disc, ids, mask):
    """Row by row with boolean indexing: the semantics the packed implementation must reproduce.
    Assumes each row's padding comes after its real tokens."""
    ee = disc.config.early_exit
    layers = disc.encoder.layers
    exit_at = set(ee.layers(len(layers)))
    bound = math.inf if ee.threshold >= 1 else math.log(ee.threshold) - math.log1p(-ee.threshold)
    x0 = disc.encoder.project(disc.embeddings(ids))
    b, t, h = x0.shape
    hidden, logits = torch.zeros(b, t, h), torch.zeros(b, t)
    exited = torch.zeros(b, t, dtype=torch.bool)
    counts = torch.zeros(len(layers))
    for row in range(b):
        n = int(mask[row].sum())
        state = x0[row, :n].clone()
        active = torch.ones(n, dtype=torch.bool)
        keep = (ids[row, :n] == CLS) | (ids[row, :n] == SEP) | (ids[row, :n] == disc.config.mask_token_id)
        for i, layer in enumerate(layers, start=1):
            run = torch.ones(n, dtype=torch.bool) if (i == len(layers) and ee.restore_last_layer) else active
            idx = run.nonzero().squeeze(1)
            counts[i - 1] += idx.numel()
            y = layer(state[idx][None], key_mask(torch.ones(1, idx.numel(), dtype=torch.bool)))[0]
            state = state.index_copy(0, idx, y)
            if i in exit_at:
                lg = disc.exit_head(i, y)
                leave = (lg.double().abs() >= bound) & ~keep[idx] & active[idx]
                logits[row, idx[leave]] = lg[leave]
                exited[row, idx[leave]] = True
                active = active.clone()
                active[idx[leave]] = False
        final = disc.head(state)
        logits[row, :n] = torch.where(exited[row, :n].clone(), logits[row, :n], final)
        hidden[row, :n] = state
    return hidden, logits, exited, counts / mask.sum()


@pytest.mark.parametrize("kw", [
    dict(),
    dict(restore_last_layer=False),
    dict(exit_layers=[1, 2, 3], threshold=0.8),
    dict(exit_layers=None, restore_last_layer=False),
], ids=["restore", "no-restore", "three-exits", "default-layer"])
def test_matches_per_row_reference(kw):
    torch.manual_seed(0)
    model = confident(ElectraForPretraining(exit_config(**kw)), std=0.7)
    ids, mask = batch(4, 24, pad=(0, 5, 2, 9))
    out = model.discriminator.run(ids, mask, exits=True)
    hidden, logits, exited, fractions = reference_discriminator(model.discriminator, ids, mask)
    real = mask.bool()
    assert exited.any() and (~exited & real).any(), "the test needs some tokens to exit and some to stay"
    assert torch.equal(out.exited, exited)
    torch.testing.assert_close(out.logits[real], logits[real], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.hidden[real], hidden[real], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.active_fractions, fractions)
    assert (out.active_fractions[1:] < 1).any()


def test_gradients_flow_through_nested_exits():
    torch.manual_seed(0)
    model = confident(ElectraForPretraining(exit_config(exit_layers=[1, 2, 3], threshold=0.8)), std=0.7)
    ids, mask = batch(4, 24, pad=(0, 5, 2, 9))

    def run():
        out = model.discriminator.run(ids, mask, exits=True)
        return out.hidden, out.logits

    assert_gradients_match(model, mask, run, lambda: reference_discriminator(model.discriminator, ids, mask)[:2])


@pytest.mark.parametrize("exit_weight", [0.0, 1.0])
def test_threshold_one_equals_no_early_exit(exit_weight):
    """Nothing exits at threshold 1.0: the gather/re-pad/scatter path must not change the result."""
    torch.manual_seed(0)
    plain = ElectraForPretraining(tiny_config())
    model = ElectraForPretraining(exit_config(threshold=1.0, exit_loss_weight=exit_weight))
    model.load_state_dict(plain.state_dict(), strict=False)  # the exit heads are the only extra weights
    confident(model, std=3.0)  # very confident heads, still nothing may exit
    ids, mask = batch(4, 24, pad=(3, 5, 2, 9))  # every row padded: the re-padded levels are shorter than T
    a = plain(ids, mask, seed=9)
    b = model(ids, mask, seed=9, step=10)
    assert torch.equal(b.active_fractions, torch.ones(4))
    real = mask.bool()
    torch.testing.assert_close(b.disc_logits[real], a.disc_logits[real], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.rtd_loss, a.rtd_loss)
    torch.testing.assert_close(b.mlm_loss, a.mlm_loss)
    expected = a.loss + 50.0 * exit_weight * b.exit_loss
    torch.testing.assert_close(b.loss, expected)
    if exit_weight == 0.0:
        a.loss.backward()
        b.loss.backward()
        ga, gb = grads(plain), grads(model)
        for name in ga:
            torch.testing.assert_close(gb[name], ga[name], rtol=1e-4, atol=1e-6, msg=name)


def test_exit_loss_is_mean_of_heads_rtd_losses():
    torch.manual_seed(0)
    model = ElectraForPretraining(exit_config(threshold=1.0))
    ids, mask = batch()
    out = model(ids, mask, seed=1)
    disc = model.discriminator.run(out.corrupted_ids, mask, exits=True, supervise=True)
    assert [r.layer for r in disc.exit_records] == [1, 2]
    real = mask.bool()
    per_head = [torch.nn.functional.binary_cross_entropy_with_logits(
        r.logits[r.mask], out.is_replaced.reshape(-1)[r.positions[r.mask]].float()) for r in disc.exit_records]
    assert all(torch.equal(r.mask.sum(), real.sum()) for r in disc.exit_records)
    torch.testing.assert_close(out.exit_loss, torch.stack(per_head).mean())


def test_warmup_blocks_exits_and_specials_never_exit():
    torch.manual_seed(0)
    model = confident(ElectraForPretraining(exit_config(warmup_steps=100, threshold=0.51)), std=3.0)
    ids, mask = batch()
    early = model(ids, mask, seed=1, step=99)
    assert torch.equal(early.active_fractions, torch.ones(4))
    late = model(ids, mask, seed=1, step=100)
    assert late.active_fractions[1] < 0.5
    out = model.discriminator.run(late.corrupted_ids, mask, exits=True)
    special = (ids == CLS) | (ids == SEP)
    assert not (out.exited & special).any()
    assert torch.isfinite(late.loss)


def test_every_token_exits():
    """Rows without specials can lose all their tokens: later layers run on an empty level."""
    torch.manual_seed(0)
    model = confident(ElectraForPretraining(exit_config(threshold=0.51, restore_last_layer=False)), std=0.0)
    with torch.no_grad():
        for head in model.discriminator.exit_heads.values():
            head.bias.fill_(5.0)
    ids = torch.randint(4, 100, (2, 10))
    mask = torch.ones_like(ids)
    out = model.discriminator.run(ids, mask, exits=True)
    assert out.exited.all()
    torch.testing.assert_close(out.active_fractions, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    res = model(ids, mask, seed=2)
    res.loss.backward()
    assert all(torch.isfinite(g).all() for g in grads(model).values())


def test_early_exit_model_overfits_in_50_steps():
    torch.manual_seed(0)
    model = ElectraForPretraining(exit_config(threshold=0.9, warmup_steps=20))
    ids, mask = batch()
    losses = train(model, ids, mask, 50)
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    out = model(ids, mask, seed=7, step=50)
    assert out.active_fractions[-2] < 1.0, "after training, confident tokens exit"
