"""Bad model configs (ElectraConfig, EarlyExitConfig) are refused when built, naming the field, so that no model
holds a value its ops would reject halfway through a run; and a model whose weights go non-finite stops with a
clear error instead of an IndexError."""
import pytest
import torch

from electra_fast.models import EarlyExitConfig, ElectraConfig, ElectraForPretraining
from tests.models.helpers import batch, one_thread, tiny_config  # noqa: F401 (autouse fixture)


@pytest.mark.parametrize("field, value, message", [
    ("temperature", 1e-40, "temperature must be 0 .argmax. or a positive finite"),
    ("temperature", 1e-39, "temperature must be 0 .argmax. or a positive finite"),
    ("temperature", float("nan"), "temperature must be 0"),
    ("temperature", float("inf"), "temperature must be 0"),
    ("temperature", -0.1, "temperature must be 0"),
    ("layer_norm_eps", 0.0, "layer_norm_eps must be a positive finite float"),
    ("layer_norm_eps", -1e-12, "layer_norm_eps must be a positive finite float"),
    ("layer_norm_eps", float("nan"), "layer_norm_eps must be a positive finite float"),
    ("layer_norm_eps", float("inf"), "layer_norm_eps must be a positive finite float"),
    ("mask_token_id", 1, "cls_token_id and mask_token_id are both 1; the special token ids must differ"),
    ("sep_token_id", 0, "pad_token_id and sep_token_id are both 0"),
    ("cls_token_id", 3, "cls_token_id and mask_token_id are both 3"),
    ("mask_token_id", 120, "mask_token_id must be in \\[0, vocab_size=120\\)"),
    ("vocab_size", 0, "vocab_size must be a positive integer"),
    ("num_attention_heads", 3, "must divide hidden_size"),
    ("hidden_dropout_prob", 1.0, "hidden_dropout_prob must be in"),
    ("mask_prob", 0.0, "mask_prob must be in"),
    ("gen_weight", float("nan"), "gen_weight and disc_weight must be finite and >= 0"),
    ("disc_weight", float("inf"), "gen_weight and disc_weight must be finite and >= 0"),
    ("generator", "gan", "generator must be one of"),
    ("early_exit", EarlyExitConfig(threshold=0.4), "early_exit.threshold must be in"),
    ("early_exit", EarlyExitConfig(exit_layers=[0]), "early_exit.exit_layers must be integers in"),
    ("early_exit", EarlyExitConfig(keep=1.5), "early_exit.keep values must be in"),
])
def test_bad_fields_are_refused_when_the_config_is_built(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tiny_config(**{field: value})


def test_replace_and_from_dict_check_too():
    config = tiny_config()
    with pytest.raises(ValueError, match="temperature must be 0"):
        ElectraConfig.from_dict(dict(config.to_dict(), temperature=1e-40))
    with pytest.raises(ValueError, match="the special token ids must differ"):
        config.replace(sep_token_id=config.cls_token_id)
    with pytest.raises(ValueError, match="unknown ElectraConfig fields"):
        ElectraConfig.from_dict(dict(config.to_dict(), tempreature=1.0))


def test_non_finite_weights_stop_the_forward_with_a_clear_error():
    """NaN in the shared embeddings reaches the generator head as NaN hidden states: a ValueError saying so
    (it used to be a bare IndexError from an id of -1)."""
    model = ElectraForPretraining(tiny_config())
    with torch.no_grad():
        model.generator.prediction.dense.bias.fill_(float("nan"))
    ids, mask = batch()
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        model(ids, mask, seed=0)
