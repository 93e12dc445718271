"""Hugging Face interop: to_hf / from_hf equal outputs, fine-tuning load, and apply_kernels equal losses and
gradients. Configs are built locally; nothing is downloaded."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from electra_fast import hf  # noqa: E402
from electra_fast.models import ElectraForPretraining  # noqa: E402

from .models.helpers import MASK, VOCAB, batch, one_thread, tiny_config  # noqa: E402,F401 (autouse fixture)


def trained_like(model, seed=0):
    """Perturb every weight so that no conversion mistake hides behind an initial value (zeros, ones)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.mark.parametrize("sharing", ["tied", "none", "gdes"])
def test_to_hf_gives_equal_outputs(sharing):
    model = trained_like(ElectraForPretraining(tiny_config(embedding_sharing=sharing)))
    disc, gen = hf.to_hf(model)
    ids, mask = batch()
    real = mask.bool()
    with torch.no_grad():
        hidden, logits = model.discriminator(ids, mask)
        theirs = disc(ids, attention_mask=mask, output_hidden_states=True)
        torch.testing.assert_close(theirs.logits[real], logits[real], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(theirs.hidden_states[-1][real], hidden[real], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gen(ids, attention_mask=mask).logits[real],
                                   model.generator.mlm_logits(ids, mask)[real], rtol=1e-5, atol=1e-5)
    # tied input/output embeddings survive the conversion
    assert torch.equal(gen.generator_lm_head.weight, gen.electra.embeddings.word_embeddings.weight)


@pytest.mark.parametrize("sharing", ["tied", "none"])
def test_round_trip_restores_every_weight(sharing):
    model = trained_like(ElectraForPretraining(tiny_config(embedding_sharing=sharing)))
    back = hf.from_hf(*hf.to_hf(model), **{k: getattr(model.config, k) for k in
                                           ("cls_token_id", "sep_token_id", "mask_token_id", "max_position_embeddings",
                                            "generator_size_fraction")})
    assert back.config.embedding_sharing == sharing
    mine, theirs = model.state_dict(), back.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        torch.testing.assert_close(theirs[key], mine[key], rtol=0, atol=0, msg=key)
    ids, mask = batch()
    torch.testing.assert_close(back(ids, mask, seed=3).loss, model(ids, mask, seed=3).loss)


def test_from_hf_without_generator_builds_a_new_one():
    model = trained_like(ElectraForPretraining(tiny_config()))
    disc, _ = hf.to_hf(model)
    back = hf.from_hf(disc, generator_size_fraction=0.5)
    assert back.generator.embeddings is back.discriminator.embeddings
    ids, mask = batch()
    torch.testing.assert_close(back.discriminator(ids, mask)[1], model.discriminator(ids, mask)[1])


def test_pretrained_discriminator_fine_tunes_with_transformers(tmp_path):
    model = trained_like(ElectraForPretraining(tiny_config()))
    disc, _ = hf.to_hf(model)
    disc.save_pretrained(tmp_path)
    classifier = transformers.ElectraForSequenceClassification.from_pretrained(tmp_path, num_labels=3).eval()
    ids, mask = batch()
    real = mask.bool()
    with torch.no_grad():
        ours = model.discriminator(ids, mask)[0]
        theirs = classifier.electra(ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(theirs[real], ours[real], rtol=1e-5, atol=1e-5)
    loss = classifier(ids, attention_mask=mask, labels=torch.tensor([0, 1, 2, 1])).loss
    loss.backward()
    assert torch.isfinite(loss)


def _mlm_labels(ids, mask, seed=0):
    g = torch.Generator().manual_seed(seed)
    chosen = (torch.rand(ids.shape, generator=g) < 0.3) & mask.bool()
    chosen[:, 1] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    return torch.where(chosen, torch.full_like(ids, MASK), ids), labels


def _grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def _hf_pair():
    model = trained_like(ElectraForPretraining(tiny_config()))
    disc, gen = hf.to_hf(model)
    return disc.train(), gen.train()


def _step(disc, gen, ids, mask):
    masked, labels = _mlm_labels(ids, mask)
    g_out = gen(masked, attention_mask=mask, labels=labels)
    replaced = (torch.arange(ids.numel()).view_as(ids) % 3 == 0).long() * mask
    d_out = disc(ids, attention_mask=mask, labels=replaced)
    (g_out.loss + 50 * d_out.loss).backward()
    return g_out, d_out


@pytest.mark.parametrize("mode", ["instance", "class"])
def test_apply_kernels_keeps_loss_and_gradients(mode, monkeypatch):
    torch.manual_seed(0)
    disc_a, gen_a = _hf_pair()
    torch.manual_seed(0)
    disc_b, gen_b = _hf_pair()
    ids, mask = batch()
    ref_g, ref_d = _step(disc_a, gen_a, ids, mask)
    if mode == "instance":
        wrapper = torch.nn.ModuleDict({"generator": gen_b, "discriminator": disc_b})
        assert sorted(hf.apply_kernels(wrapper)) == ["discriminator", "generator"]
    else:
        for cls in (transformers.ElectraForPreTraining, transformers.ElectraForMaskedLM):
            monkeypatch.setattr(cls, "forward", cls.forward)  # restored after the test
        # register an undo that deletes the attribute apply_kernels adds to the class
        monkeypatch.setattr(transformers.ElectraForMaskedLM, "_electra_fast_original_forward", None, raising=False)
        monkeypatch.delattr(transformers.ElectraForMaskedLM, "_electra_fast_original_forward")
        assert hf.apply_kernels() is None
    new_g, new_d = _step(disc_b, gen_b, ids, mask)
    torch.testing.assert_close(new_g.loss, ref_g.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new_d.loss, ref_d.loss, rtol=1e-5, atol=1e-6)
    assert new_g.logits is None and new_g.samples.shape == (int((_mlm_labels(ids, mask)[1] != -100).sum()),)
    assert ((new_g.samples >= 0) & (new_g.samples < VOCAB)).all()
    for ref, new in ((gen_a, gen_b), (disc_a, disc_b)):
        ga, gb = _grads(ref), _grads(new)
        assert ga.keys() == gb.keys()
        for name in ga:
            torch.testing.assert_close(gb[name], ga[name], rtol=1e-4, atol=1e-6, msg=name)
    # without labels the generator still returns its logits
    with torch.no_grad():
        torch.testing.assert_close(gen_b(ids, attention_mask=mask).logits, gen_a(ids, attention_mask=mask).logits)


def test_apply_kernels_needs_an_electra_module():
    with pytest.raises(ValueError, match="no transformers ElectraForPreTraining"):
        hf.apply_kernels(torch.nn.Linear(2, 2))
