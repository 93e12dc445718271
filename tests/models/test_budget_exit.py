"""Token-level early exit in the discriminator, budget policy: each row keeps its k least confident
positions after an exit layer. Checked against a per-row reference written with plain indexing, for
nesting, restore, specials, padding, the warm-up ramp, random selection, torch.compile and FLOPs."""
import math

import pytest
import torch

from electra_fast import flops
from electra_fast.models import EarlyExitConfig, ElectraConfig, ElectraForPretraining
from electra_fast.models.encoder import key_mask

from .helpers import (CLS, SEP, assert_gradients_match, batch, one_thread, tiny_config,  # noqa: F401 (autouse)
                      train)
from .test_early_exit import confident


def budget_config(**kw):
    return tiny_config(early_exit=EarlyExitConfig(**{"exit_layers": [1, 2], "keep": [0.5, 0.25], **kw}))


def keep_order(logits, real, special, t):
    """Positions in the order they are kept: specials, then real tokens by |logit| (float32) and position,
    then padding by position."""
    def key(j):
        group = 0 if (special[j] and real[j]) else (1 if real[j] else 2)
        conf = abs(float(logits[j].detach().float())) if group == 1 else 0.0
        return (group, math.inf if math.isnan(conf) else conf, int(t[j]))
    return sorted(range(len(t)), key=key)


def reference_discriminator(disc, ids, mask, scores=None):
    """Row by row: the semantics the batched select/scatter path must reproduce."""
    ee = disc.config.early_exit
    layers = disc.encoder.layers
    n_layers = len(layers)
    exits = dict(zip(ee.layers(n_layers), ee.kept_counts(n_layers, ids.shape[1])))
    x0 = disc.encoder.project(disc.embeddings(ids))
    b, t, h = x0.shape
    hidden, logits = torch.zeros(b, t, h), torch.zeros(b, t)
    exited = torch.zeros(b, t, dtype=torch.bool)
    real_all = mask.bool()
    special_all = (ids == CLS) | (ids == SEP) | (ids == disc.config.mask_token_id)
    for row in range(b):
        state = x0[row].clone()
        idx = torch.arange(t)  # the positions the next layer runs on, ascending
        for i, layer in enumerate(layers, start=1):
            if i == n_layers and ee.restore_last_layer:
                idx = torch.arange(t)
            y = layer(state[idx][None], key_mask(real_all[row, idx][None]))[0]
            state = state.index_copy(0, idx, y)
            if i in exits and exits[i] < len(idx):
                lg = disc.exit_head(i, y)
                priority = lg if scores is None else scores[row, idx]
                order = keep_order(priority, real_all[row, idx], special_all[row, idx], idx)
                kept = torch.tensor(sorted(order[:exits[i]]), dtype=torch.int64)
                leaving = torch.ones(len(idx), dtype=torch.bool)
                leaving[kept] = False
                leaving &= real_all[row, idx]
                logits[row, idx[leaving]] = lg[leaving]
                exited[row, idx[leaving]] = True
                idx = idx[kept]
        final = disc.head(state)
        logits[row] = torch.where(exited[row].clone(), logits[row], final)
        hidden[row] = state
    return hidden, logits, exited


CASES = {
    "nested-restore": dict(),
    "nested-no-restore": dict(restore_last_layer=False),
    "one-exit": dict(exit_layers=[2], keep=0.4),
    "default-layer": dict(exit_layers=None, keep=0.5),
}


@pytest.mark.parametrize("kw", CASES.values(), ids=CASES.keys())
def test_matches_per_row_reference(kw):
    torch.manual_seed(0)
    model = confident(ElectraForPretraining(budget_config(**kw)), std=0.7)
    ids, mask = batch(4, 24, pad=(0, 5, 2, 15))  # the last row has fewer real tokens than the budget
    out = model.discriminator.run(ids, mask, exits=True)
    hidden, logits, exited = reference_discriminator(model.discriminator, ids, mask)
    real = mask.bool()
    assert exited.any() and (~exited & real).any()
    assert torch.equal(out.exited, exited)
    torch.testing.assert_close(out.logits[real], logits[real], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.hidden[real], hidden[real], rtol=1e-4, atol=1e-5)
    expected = flops.budget_fractions(model.config, 24)
    torch.testing.assert_close(out.active_fractions, torch.tensor(expected, dtype=torch.float32))


def test_gradients_match_the_reference():
    torch.manual_seed(0)
    model = confident(ElectraForPretraining(budget_config()), std=0.7)
    ids, mask = batch(4, 24, pad=(0, 5, 2, 9))

    def run():
        out = model.discriminator.run(ids, mask, exits=True)
        return out.hidden, out.logits

    assert_gradients_match(model, mask, run, lambda: reference_discriminator(model.discriminator, ids, mask)[:2])


def test_specials_stay_and_padding_leaves_first():
    torch.manual_seed(0)
    model = confident(ElectraForPretraining(budget_config(exit_layers=[1], keep=0.25,
                                                          restore_last_layer=False)), std=3.0)
    ids, mask = batch(4, 24, pad=(0, 9, 2, 12))
    out = model.discriminator.run(ids, mask, exits=True)
    special = (ids == CLS) | (ids == SEP)
    assert not (out.exited & special).any()
    # k = 6 of 24 per row and every row has more than 6 real tokens: each keeps exactly 6 real tokens
    real = mask.bool()
    assert torch.equal((real & ~out.exited).sum(1), torch.full((4,), 6))


def test_a_budget_below_the_specials_is_an_error():
    model = ElectraForPretraining(budget_config(exit_layers=[1], keep=0.04))
    ids, mask = batch(2, 24)
    with pytest.raises(ValueError, match="early_exit.keep=0.04 keeps 1 of 24 positions, which would drop"):
        model.discriminator.run(ids, mask, exits=True)


def test_warmup_ramps_the_exit_fraction():
    model = ElectraForPretraining(budget_config(exit_layers=[1], keep=0.5, warmup_steps=10))
    ids, mask = batch(2, 24)
    seen = [model(ids, mask, seed=1, step=s).active_fractions[1].item() for s in (0, 5, 10, 100)]
    assert seen == [1.0, 18 / 24, 0.5, 0.5]


def test_keep_one_equals_no_early_exit():
    torch.manual_seed(0)
    plain = ElectraForPretraining(tiny_config())
    model = ElectraForPretraining(budget_config(keep=1.0, exit_layers=[2], exit_loss_weight=0.0))
    model.load_state_dict(plain.state_dict(), strict=False)
    ids, mask = batch()
    a, b = plain(ids, mask, seed=3), model(ids, mask, seed=3)
    torch.testing.assert_close(b.loss, a.loss)
    assert torch.equal(b.active_fractions, torch.ones(4))


def test_random_selection_ignores_the_exit_head_and_follows_the_seed():
    torch.manual_seed(0)
    model = confident(ElectraForPretraining(budget_config(exit_layers=[1], keep=0.5, selection="random")))
    ids, mask = batch(4, 24, pad=(0,))
    scores = torch.rand(4, 24)
    out = model.discriminator.run(ids, mask, exits=True, scores=scores)
    _, _, exited = reference_discriminator(model.discriminator, ids, mask, scores=scores)
    assert torch.equal(out.exited, exited)
    with torch.no_grad():  # a different exit head changes nothing under random selection
        model.discriminator.exit_heads["1"].weight.mul_(-3)
    assert torch.equal(model.discriminator.run(ids, mask, exits=True, scores=scores).exited, exited)
    # through the pre-training model the priorities come from the Philox stream of (seed, offset)
    a, b, c = (model(ids, mask, seed=5, offset=o).disc_logits for o in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_compiles_fullgraph_without_host_sync():
    torch.manual_seed(0)
    model = confident(ElectraForPretraining(budget_config()), std=0.7).eval()
    ids, mask = batch(4, 24, pad=(0, 5, 2, 9))

    def run(ids, mask):
        out = model.discriminator.run(ids, mask, exits=True)
        return out.hidden, out.logits, out.exited

    torch._dynamo.reset()
    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(ids, mask), run(ids, mask)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_exit_heads_are_cheap():
    """An exit head is a dense H -> 1: under 2% of one layer's FLOPs at every preset size."""
    for name in ("small", "base", "large"):
        cfg = ElectraConfig.preset(name)
        layer = flops.layer_flops(cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, 128, 128)
        assert flops.exit_head_flops(cfg.hidden_size, 128) < 0.02 * layer


def test_budget_model_overfits_in_50_steps():
    torch.manual_seed(0)
    model = ElectraForPretraining(budget_config(exit_layers=[1], keep=0.5, warmup_steps=10))
    ids, mask = batch()
    losses = train(model, ids, mask, 50)
    assert losses[-1] < 0.5 * losses[0], losses[::10]


@pytest.mark.gpu
@pytest.mark.parametrize("backend_name", ["cuda", "triton"])
def test_budget_forward_is_cuda_graph_safe(backend_name):
    """Static shapes and no host sync: the discriminator's budget path captures in a CUDA graph and replays
    to the eager result, on each GPU backend."""
    from electra_fast import backend

    torch.manual_seed(0)
    model = confident(ElectraForPretraining(budget_config()), std=0.7).cuda().eval()
    ids, mask = (v.cuda() for v in batch(4, 24, pad=(0, 5, 2, 9)))
    with backend.use(backend_name), torch.no_grad():
        want = model.discriminator.run(ids, mask, exits=True)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            model.discriminator.run(ids, mask, exits=True)  # warm-up outside the capture (lazy init)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            got = model.discriminator.run(ids, mask, exits=True)
        graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(got.exited, want.exited)
    torch.testing.assert_close(got.logits, want.logits)
    torch.testing.assert_close(got.hidden, want.hidden)
