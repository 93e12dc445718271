"""ElectraForPretraining with the network generator: outputs, losses, gradient flow, GDES, determinism."""
import pytest
import torch

from electra_fast import backend
from electra_fast.models import ElectraConfig, ElectraForPretraining

from .helpers import CLS, MASK, SEP, batch, grads, one_thread, tiny_config, train  # noqa: F401 (autouse fixture)


def test_tiny_preset_forward_shapes_and_losses():
    cfg = ElectraConfig.preset("tiny", vocab_size=200, cls_token_id=1, sep_token_id=2, mask_token_id=3)
    model = ElectraForPretraining(cfg)
    ids, mask = batch(2, 16)
    out = model(ids, mask, seed=1, offset=0)
    assert out.disc_logits.shape == ids.shape and out.is_replaced.shape == ids.shape
    assert out.active_fractions.shape == (cfg.num_hidden_layers,)
    assert torch.equal(out.active_fractions, torch.ones(cfg.num_hidden_layers))
    assert out.exit_loss is None
    assert torch.isfinite(out.loss) and out.mlm_loss > 0 and out.rtd_loss > 0
    torch.testing.assert_close(out.loss, cfg.gen_weight * out.mlm_loss + cfg.disc_weight * out.rtd_loss)
    # at initialisation the generator is near uniform: its loss is about log(V)
    assert abs(out.mlm_loss.item() - torch.log(torch.tensor(200.0)).item()) < 0.5
    hidden, logits = model.discriminator(ids, mask)
    assert hidden.shape == (2, 16, cfg.hidden_size) and logits.shape == (2, 16)


def test_corruption_contract():
    model = ElectraForPretraining(tiny_config())
    ids, mask = batch()
    out = model(ids, mask, seed=3, offset=11)
    real = mask.bool()
    assert torch.equal(out.is_replaced, out.corrupted_ids != ids)
    assert not (out.is_replaced & ~out.is_masked).any(), "only masked positions may change"
    assert not (out.is_masked & ~real).any(), "padding is never masked"
    special = (ids == CLS) | (ids == SEP)
    assert not (out.is_masked & special).any(), "[CLS]/[SEP] are never masked"
    # k = round(0.15 n_real) masked per row
    for row in range(ids.shape[0]):
        n = int(real[row].sum())
        assert int(out.is_masked[row].sum()) == max(1, round(0.15 * n))
    assert ((out.corrupted_ids >= 0) & (out.corrupted_ids < model.config.vocab_size)).all()
    assert not (out.corrupted_ids == MASK).any(), "the discriminator never sees [MASK]"
    replaced = out.is_replaced[real].float().mean()
    torch.testing.assert_close(out.replaced_fraction, replaced)


def test_seed_and_offset_key_the_corruption():
    model = ElectraForPretraining(tiny_config())
    ids, mask = batch()
    a = model(ids, mask, seed=5, offset=2)
    b = model(ids, mask, seed=5, offset=2)
    c = model(ids, mask, seed=5, offset=3)
    assert torch.equal(a.corrupted_ids, b.corrupted_ids) and torch.equal(a.loss, b.loss)
    assert not torch.equal(a.is_masked, c.is_masked)


def test_loss_and_metrics_match_plain_torch():
    torch.manual_seed(0)
    model = ElectraForPretraining(tiny_config())
    ids, mask = batch()
    out = model(ids, mask, seed=1)
    real = mask.bool()
    logits, labels = out.disc_logits[real], out.is_replaced[real].float()
    torch.testing.assert_close(out.rtd_loss, torch.nn.functional.binary_cross_entropy_with_logits(logits, labels))
    pred = logits > 0
    torch.testing.assert_close(out.rtd_accuracy, (pred == labels.bool()).float().mean())
    hidden, disc_logits = model.discriminator(out.corrupted_ids, mask)
    torch.testing.assert_close(disc_logits, out.disc_logits)


def test_mlm_loss_equals_cross_entropy_of_full_logits():
    torch.manual_seed(0)
    model = ElectraForPretraining(tiny_config(mask_fraction=1.0))  # every masked position becomes [MASK]
    ids, mask = batch()
    out = model(ids, mask, seed=2)
    masked_ids = torch.where(out.is_masked, torch.full_like(ids, MASK), ids)
    logits = model.generator.mlm_logits(masked_ids, mask)
    expected = torch.nn.functional.cross_entropy(logits[out.is_masked], ids[out.is_masked])
    torch.testing.assert_close(out.mlm_loss, expected, rtol=1e-5, atol=1e-5)
    model.eval()  # no dropout: the same logits at the masked positions, without the other positions'
    torch.testing.assert_close(model.generator.mlm_logits(masked_ids, mask, positions=out.is_masked),
                               model.generator.mlm_logits(masked_ids, mask)[out.is_masked])


def test_overfits_a_fixed_batch_in_50_steps():
    torch.manual_seed(0)
    model = ElectraForPretraining(tiny_config())
    ids, mask = batch()
    losses = train(model, ids, mask, 50)
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_no_rtd_gradient_reaches_the_generator():
    torch.manual_seed(0)
    model = ElectraForPretraining(tiny_config())
    ids, mask = batch()
    model(ids, mask, seed=1).rtd_loss.backward()
    g = grads(model)
    generator_only = [n for n in g if n.startswith("generator.") and "embeddings" not in n]
    assert generator_only
    for name in generator_only:
        assert torch.count_nonzero(g[name]) == 0, name
    # tied: the shared embeddings do learn from the RTD loss
    assert torch.count_nonzero(g["generator.embeddings.word_embeddings.weight"]) > 0


def test_gdes_updates_e_delta_only_from_rtd():
    torch.manual_seed(0)
    model = ElectraForPretraining(tiny_config(embedding_sharing="gdes"))
    ids, mask = batch()
    assert torch.count_nonzero(model.word_delta) == 0, "E_delta starts at zero"
    out = model(ids, mask, seed=1)
    out.rtd_loss.backward(retain_graph=True)
    g = grads(model)
    assert torch.count_nonzero(g["word_delta"]) > 0
    assert torch.count_nonzero(g["generator.embeddings.word_embeddings.weight"]) == 0
    model.zero_grad(set_to_none=True)
    out.mlm_loss.backward()
    g = grads(model)
    assert torch.count_nonzero(g["word_delta"]) == 0
    assert torch.count_nonzero(g["generator.embeddings.word_embeddings.weight"]) > 0


def test_gdes_discriminator_sees_sum_of_embeddings():
    torch.manual_seed(0)
    model = ElectraForPretraining(tiny_config(embedding_sharing="gdes"))
    ids, mask = batch()
    with torch.no_grad():
        model.word_delta.normal_()
    ref = ElectraForPretraining(tiny_config(embedding_sharing="none"))
    state = {k: v for k, v in model.state_dict().items() if k != "word_delta"}
    ref.load_state_dict({**ref.state_dict(), **{k: v for k, v in state.items() if k in ref.state_dict()}})
    with torch.no_grad():
        ref.discriminator.embeddings.word_embeddings.weight.copy_(
            model.generator.embeddings.word_embeddings.weight + model.word_delta)
        torch.testing.assert_close(model.discriminator(ids, mask)[1], ref.discriminator(ids, mask)[1])


def test_sharing_none_has_separate_embeddings():
    model = ElectraForPretraining(tiny_config(embedding_sharing="none"))
    assert model.discriminator.embeddings is not model.generator.embeddings
    tied = ElectraForPretraining(tiny_config())
    assert tied.discriminator.embeddings is tied.generator.embeddings


@pytest.mark.parametrize("name", [n for n in backend.available("cpu") if n != "reference"])
def test_backends_agree_with_reference(name):
    torch.manual_seed(0)
    model = ElectraForPretraining(tiny_config())
    ids, mask = batch(2, 12, pad=(0, 3))
    with backend.use("reference"):
        ref = model(ids, mask, seed=4)
        ref.loss.backward()
    g_ref = grads(model)
    model.zero_grad(set_to_none=True)
    with backend.use(name):
        out = model(ids, mask, seed=4)
        out.loss.backward()
    assert torch.equal(out.corrupted_ids, ref.corrupted_ids)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-5)
    for n, g in grads(model).items():
        torch.testing.assert_close(g, g_ref[n], rtol=1e-4, atol=1e-5, msg=n)


def test_bad_inputs():
    model = ElectraForPretraining(tiny_config())
    ids, mask = batch()
    with pytest.raises(ValueError, match="input_ids must be \\[B, T\\]"):
        model(ids[0], mask[0])
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        model(ids, mask[:, :-1])
    with pytest.raises(ValueError, match="offset must be < 2\\^62"):
        model(ids, mask, offset=2**62)
    with pytest.raises(TypeError, match="seed must be a Python int"):
        model(ids, mask, seed=1.5)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.ones(1, 65, dtype=torch.int64))


def test_discriminator_compiles_fullgraph():
    torch.manual_seed(0)
    model = ElectraForPretraining(tiny_config())
    ids, mask = batch()
    compiled = torch.compile(model.discriminator, fullgraph=True)
    hidden, logits = compiled(ids, mask)
    ref_hidden, ref_logits = model.discriminator(ids, mask)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(hidden, ref_hidden, rtol=1e-4, atol=1e-5)


def test_hidden_dropout_is_dropout_and_follows_torchs_seed():
    """Training mode drops (the embeddings' output has about p of its elements zeroed, scaled by 1/(1-p)),
    torch.manual_seed reproduces the step, and eval mode is deterministic and dropout-free."""
    cfg = tiny_config(hidden_dropout_prob=0.2)
    model = ElectraForPretraining(cfg)
    ids, mask = batch()
    emb = model.discriminator.embeddings
    model.train()
    out = emb(ids)
    model.eval()
    clean = emb(ids)
    zero = out == 0
    assert 0.12 < zero.float().mean().item() < 0.28
    torch.testing.assert_close(out[~zero], clean[~zero] / 0.8)
    model.train()
    losses = []
    for _ in range(2):
        torch.manual_seed(5)
        losses.append(model(ids, mask, seed=1).loss)
    assert torch.equal(losses[0], losses[1])
    torch.manual_seed(6)
    assert not torch.equal(model(ids, mask, seed=1).loss, losses[0])


def test_cpu_training_attention_is_sdpas_math_with_philox_dropout(monkeypatch):
    """In training on CPU the layer computes attention itself (to drop the probabilities with the Philox
    dropout): with that dropout taken out it equals SDPA's, and with it the probabilities are dropped."""
    from electra_fast.models.encoder import EncoderLayer, key_mask

    cfg = tiny_config(attention_probs_dropout_prob=0.5)
    layer = EncoderLayer(32, 2, 64, cfg).train()
    q, k, v = torch.randn(3, 2, 2, 9, 16).unbind(0)
    mask = key_mask(torch.tensor([[1] * 9, [1] * 5 + [0] * 4]))
    dropped = layer.attention(q, k, v, mask)
    monkeypatch.setattr(layer.attention_dropout, "forward", lambda probs: probs)
    plain = layer.attention(q, k, v, mask)
    torch.testing.assert_close(plain, torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert not torch.allclose(dropped, plain)
    layer.eval()
    torch.testing.assert_close(layer.attention(q, k, v, mask), plain)
