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
