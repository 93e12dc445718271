"""ElectraConfig / EarlyExitConfig: presets per the paper, JSON round trip, clear errors for bad settings."""
import json

import pytest
import torch

from electra_fast.models import EarlyExitConfig, ElectraConfig, ElectraForPretraining


@pytest.mark.parametrize("name, layers, hidden, ffn, heads, emb, gen_hidden, gen_ffn, gen_heads, mask, lr, batch, seq", [
    ("small", 12, 256, 1024, 4, 128, 64, 256, 1, 0.15, 5e-4, 128, 128),
    ("base", 12, 768, 3072, 12, 768, 256, 1024, 4, 0.15, 2e-4, 256, 512),
    ("large", 24, 1024, 4096, 16, 1024, 256, 1024, 4, 0.25, 2e-4, 2048, 512),
])
def test_presets_match_the_paper(name, layers, hidden, ffn, heads, emb, gen_hidden, gen_ffn, gen_heads, mask, lr,
                                 batch, seq):
    c = ElectraConfig.preset(name)
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads, c.embedding_size) == \
        (layers, hidden, ffn, heads, emb)
    assert (c.gen_hidden_size, c.gen_intermediate_size, c.gen_num_attention_heads, c.gen_num_hidden_layers) == \
        (gen_hidden, gen_ffn, gen_heads, layers)
    assert (c.mask_prob, c.learning_rate, c.batch_size, c.seq_len) == (mask, lr, batch, seq)
    assert (c.gen_weight, c.disc_weight, c.generator, c.embedding_sharing) == (1.0, 50.0, "network", "tied")


def test_preset_overrides_and_explicit_generator_size():
    c = ElectraConfig.preset("small", generator_hidden_size=128, generator_num_attention_heads=2, vocab_size=1000)
    assert (c.gen_hidden_size, c.gen_num_attention_heads, c.vocab_size) == (128, 2, 1000)
    assert ElectraConfig.preset("tiny").num_hidden_layers == 4


def test_json_round_trip_with_early_exit():
    c = ElectraConfig.preset("tiny", early_exit=EarlyExitConfig(exit_layers=[1, 2], keep=[0.6, 0.4], warmup_steps=5,
                                                                   selection="random"), generator="cluster")
    text = c.to_json()
    assert json.loads(text)["early_exit"]["exit_layers"] == [1, 2]
    back = ElectraConfig.from_json(text)
    assert back == c and isinstance(back.early_exit, EarlyExitConfig)
    assert ElectraConfig.from_json(ElectraConfig.preset("base").to_json()) == ElectraConfig.preset("base")


def test_default_policy_is_a_half_budget_after_a_third_of_the_layers():
    ee = EarlyExitConfig()
    assert (ee.policy, ee.layers(12), ee.layers(4), ee.keeps(12)) == ("budget", [4], [1], [0.5])
    assert EarlyExitConfig(threshold=0.9).policy == "threshold"
    assert EarlyExitConfig(keep=0.3, exit_layers=[2, 5]).keeps(12) == [0.3, 0.3]


@pytest.mark.parametrize("keep, seq_len, step, expected", [
    (0.5, 128, None, [64]),
    (0.3, 10, None, [3]),            # 0.3 * 10 is 3.0000000000000004 in floating point: still 3
    (0.5, 127, None, [64]),          # ceil
    ([0.6, 0.25], 128, None, [77, 32]),
    (0.5, 128, 0, [128]),            # the warm-up ramp: every token at step 0 ...
    (0.5, 128, 50, [96]),            # ... half way: exit fraction 0.25 ...
    (0.5, 128, 100, [64]),           # ... and the full budget from warmup_steps on
    ([0.6, 0.25], 128, 50, [103, 80]),
])
def test_kept_counts(keep, seq_len, step, expected):
    layers = [1] if isinstance(keep, float) else [1, 2]
    ee = EarlyExitConfig(keep=keep, exit_layers=layers, warmup_steps=100)
    assert ee.kept_counts(4, seq_len, step) == expected


@pytest.mark.parametrize("overrides, match", [
    (dict(num_attention_heads=3), "must divide hidden_size"),
    (dict(generator_num_attention_heads=3), "generator's heads"),
    (dict(early_exit=EarlyExitConfig(exit_layers=[4])), "exit_layers must be integers in \\[1, 3\\]"),
    (dict(early_exit=EarlyExitConfig(exit_layers=[0])), "exit_layers"),
    (dict(early_exit=EarlyExitConfig(exit_layers=[1, 1])), "duplicates"),
    (dict(early_exit=EarlyExitConfig(threshold=0.5)), "threshold must be in \\(0.5, 1\\]"),
    (dict(early_exit=EarlyExitConfig(threshold=1.01)), "threshold"),
    (dict(early_exit=EarlyExitConfig(warmup_steps=-1)), "warmup_steps"),
    (dict(early_exit=EarlyExitConfig(keep=0.0)), "keep values must be in \\(0, 1\\]"),
    (dict(early_exit=EarlyExitConfig(keep=1.5)), "keep values must be in"),
    (dict(early_exit=EarlyExitConfig(keep=[0.5, 0.4])), "keep has 2 values but there are 1 exit layers"),
    (dict(early_exit=EarlyExitConfig(keep=[0.3, 0.5], exit_layers=[1, 2])), "must not increase"),
    (dict(early_exit=EarlyExitConfig(keep=0.5, threshold=0.9)), "both keep .* and threshold"),
    (dict(early_exit=EarlyExitConfig(selection="top")), "selection must be one of"),
    (dict(early_exit=EarlyExitConfig(threshold=0.9, selection="random")), "needs the budget policy"),
    (dict(early_exit=EarlyExitConfig(exit_layers=[])), "exit_layers is empty"),
    (dict(generator="gumbel"), "generator must be one of"),
    (dict(embedding_sharing="shared"), "embedding_sharing must be one of"),
    (dict(mask_prob=0.0), "mask_prob"),
    (dict(hidden_size=0), "hidden_size must be a positive integer"),
    (dict(mask_token_id=30522), "mask_token_id must be in"),
    (dict(hidden_act="relu"), "hidden_act"),
])
def test_bad_config_gives_a_clear_error(overrides, match):
    with pytest.raises(ValueError, match=match):
        ElectraConfig.preset("tiny", **overrides)


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="unknown preset"):
        ElectraConfig.preset("huge")
    with pytest.raises(ValueError, match="unknown ElectraConfig fields"):
        ElectraConfig.preset("tiny", hiden_size=3)
    with pytest.raises(ValueError, match="unknown ElectraConfig fields"):
        ElectraConfig.from_json('{"nope": 1}')


def test_model_checks_sampler_against_generator():
    with pytest.raises(ValueError, match="needs a sampler"):
        ElectraForPretraining(ElectraConfig.preset("tiny", generator="uniform"))
    with pytest.raises(ValueError, match="only used with a statistical generator"):
        ElectraForPretraining(ElectraConfig.preset("tiny"), sampler=object())


@pytest.mark.parametrize("name, disc_params", [("small", 13.5e6), ("base", 110e6), ("large", 335e6)])
def test_preset_sizes_on_meta(name, disc_params):
    """Parameter counts of the discriminators match the paper's (14M / 110M / 335M), built on meta."""
    with torch.device("meta"):
        model = ElectraForPretraining(ElectraConfig.preset(name))
    n = sum(p.numel() for p in model.discriminator.parameters())
    assert abs(n - disc_params) / disc_params < 0.03, n
    q = model.discriminator.encoder.layers[0].qkv.weight
    assert q.shape == (3 * model.config.hidden_size, model.config.hidden_size) and q.device.type == "meta"


@pytest.mark.parametrize("name", ["small", "base"])
def test_preset_forward_shapes_under_fake_tensors(name):
    """A full-size forward without memory or compute: fake tensors carry only shapes."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        cfg = ElectraConfig.preset(name)
        model = ElectraForPretraining(cfg)
        ids = torch.randint(0, cfg.vocab_size, (2, cfg.seq_len))
        mask = torch.ones_like(ids)
        hidden, logits = model.discriminator(ids, mask)
        mlm = model.generator.mlm_logits(ids, mask)
        logits.sum().backward()
    assert hidden.shape == (2, cfg.seq_len, cfg.hidden_size) and logits.shape == (2, cfg.seq_len)
    assert mlm.shape == (2, cfg.seq_len, cfg.vocab_size)
    assert model.discriminator.head.dense.weight.grad.shape == (cfg.hidden_size, cfg.hidden_size)
