"""electra_fast.training.optim: the warm-up/decay schedule and the weight-decay parameter groups."""
import types

import pytest

from electra_fast.training.optim import adamw, lr_factor, param_groups

from .helpers import StandIn


def test_lr_schedule():
    f = [lr_factor(s, 4, 10) for s in range(11)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert f[4:] == pytest.approx([1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0])
    assert lr_factor(0, 0, 10) == 1.0


def test_param_groups_exclude_layernorm_and_bias():
    model = StandIn(types.SimpleNamespace(vocab_size=50))
    decay, no_decay = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    assert ids(decay) == {id(model.discriminator.embed.weight), id(model.discriminator.head.weight)}
    assert ids(no_decay) == {id(model.discriminator.norm.weight), id(model.discriminator.norm.bias), id(model.discriminator.head.bias)}


def test_scheduler_follows_the_schedule():
    optimizer, scheduler = adamw(StandIn(types.SimpleNamespace(vocab_size=50)), lr=0.1, eps=1e-6,
                                 weight_decay=0.01, warmup=4, total_steps=10)
    assert optimizer.defaults["betas"] == (0.9, 0.999) and optimizer.defaults["eps"] == 1e-6
    rates = []
    for _ in range(10):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.1 * lr_factor(s, 4, 10) for s in range(10)])


def test_adamw_is_fused_and_steps_as_the_reference_adamw():
    """The fused AdamW takes the same steps as torch's single-tensor AdamW (same groups, decay and rates)."""
    import torch

    torch.manual_seed(0)
    models = [StandIn(types.SimpleNamespace(vocab_size=50)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizer, _ = adamw(models[0], lr=0.01, eps=1e-6, weight_decay=0.01, warmup=1, total_steps=10)
    assert all(group["fused"] for group in optimizer.param_groups)
    reference = torch.optim.AdamW(param_groups(models[1], 0.01), lr=0.01, betas=(0.9, 0.999), eps=1e-6,
                                  foreach=False)
    initial = [p.detach().clone() for p in models[0].parameters()]
    for _ in range(5):
        grads = [torch.randn_like(p) for p in models[0].parameters()]
        for opt, model in ((optimizer, models[0]), (reference, models[1])):
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    for fused, plain, before in zip(models[0].parameters(), models[1].parameters(), initial):
        assert not torch.equal(fused, before)
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
