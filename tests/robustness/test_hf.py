"""Hugging Face interop under bad input: the export carries the special token ids and a tokenizer transformers
loads from the folder alone, from_hf takes the ids from it and never guesses them, and wrong models, overrides
and shapes are errors that name what is wrong."""
import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from electra_fast import data, hf  # noqa: E402
from electra_fast.models import ElectraForPretraining  # noqa: E402
from electra_fast.training.export import export_hf  # noqa: E402
from tests.models.helpers import batch, one_thread, tiny_config  # noqa: E402,F401 (autouse fixture)

TEXT = ["The river flows past the old mill toward the sea.", "Stars form in clouds of gas and dust.",
        "A philosopher asks what can be known and how."] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return data.train_tokenizer(TEXT, vocab_size=120)


@pytest.fixture
def exported(tmp_path, tokenizer):
    """An ElectraForPretraining on the trained vocabulary ([PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4),
    exported as `electra-fast pretrain` exports it."""
    ids = data.SpecialIds.from_tokenizer(tokenizer)
    model = ElectraForPretraining(tiny_config(vocab_size=tokenizer.get_vocab_size(), pad_token_id=ids.pad,
                                              cls_token_id=ids.cls, sep_token_id=ids.sep, mask_token_id=ids.mask))
    assert export_hf(model, tokenizer, tmp_path / "hf") == tmp_path / "hf"
    return model, tmp_path / "hf"


def test_the_export_folder_alone_loads_the_tokenizer_and_the_special_ids(exported, tokenizer):
    """from_hf on an export used to reset cls/sep/mask to BERT's 101/102/103, ordinary tokens of this vocabulary."""
    model, folder = exported
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    encoded = hf_tokenizer("the river flows", "stars form")
    ids = data.SpecialIds.from_tokenizer(tokenizer)
    assert encoded["input_ids"][0] == ids.cls and encoded["input_ids"].count(ids.sep) == 2
    assert (hf_tokenizer.mask_token_id, hf_tokenizer.pad_token_id) == (ids.mask, ids.pad)
    assert encoded["input_ids"][1:-1] != [] and set(encoded["token_type_ids"]) == {0, 1}
    back = hf.from_hf(transformers.ElectraForPreTraining.from_pretrained(folder))
    got = (back.config.pad_token_id, back.config.cls_token_id, back.config.sep_token_id, back.config.mask_token_id)
    assert got == (ids.pad, ids.cls, ids.sep, ids.mask) == (0, 2, 3, 4)
    ids_, mask = batch()
    ids_ = ids_ % model.config.vocab_size
    torch.testing.assert_close(back.discriminator(ids_, mask)[1], model.discriminator(ids_, mask)[1])


def _without_ids(disc):
    for name in ("cls_token_id", "sep_token_id", "mask_token_id"):
        setattr(disc.config, name, None)
    return disc


def test_from_hf_refuses_to_guess_the_special_ids(exported):
    _, folder = exported
    disc = _without_ids(transformers.ElectraForPreTraining.from_pretrained(folder))
    with pytest.raises(ValueError, match="from_hf cannot know cls_token_id, sep_token_id, mask_token_id"):
        hf.from_hf(disc)
    back = hf.from_hf(disc, tokenizer=transformers.AutoTokenizer.from_pretrained(folder))
    assert (back.config.cls_token_id, back.config.sep_token_id, back.config.mask_token_id) == (2, 3, 4)
    back = hf.from_hf(disc, cls_token_id=2, sep_token_id=3, mask_token_id=4)
    assert back.config.mask_token_id == 4


def test_a_tokenizer_that_contradicts_the_config_is_an_error(exported, tokenizer):
    _, folder = exported
    disc = transformers.ElectraForPreTraining.from_pretrained(folder)
    disc.config.mask_token_id = 7
    with pytest.raises(ValueError, match="mask_token_id: the discriminator's config records 7 but the tokenizer has 4"):
        hf.from_hf(disc, tokenizer=tokenizer)


def _pair():
    model = ElectraForPretraining(tiny_config())
    return hf.to_hf(model)


def test_wrong_models_are_named():
    disc, gen = _pair()
    with pytest.raises(TypeError, match="discriminator must be transformers' ElectraForPreTraining, got "
                                        "ElectraForMaskedLM .the arguments go from_hf.discriminator, generator.."):
        hf.from_hf(gen, disc)
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=64))
    with pytest.raises(TypeError, match="got BertModel"):
        hf.from_hf(bert)
    with pytest.raises(TypeError, match="generator must be transformers' ElectraForMaskedLM, got BertModel"):
        hf.from_hf(disc, bert)


@pytest.mark.parametrize("field, value", [("hidden_size", 64), ("max_position_embeddings", 128),
                                          ("type_vocab_size", 3), ("num_hidden_layers", 2), ("vocab_size", 100)])
def test_an_override_that_contradicts_the_weights_is_an_error(field, value):
    disc, gen = _pair()
    with pytest.raises(ValueError, match=f"{field}={value} contradicts the weights"):
        hf.from_hf(disc, gen, **{field: value})


def test_weights_that_do_not_fit_their_config_name_the_tensor():
    """A config edited by hand (here its position table made longer than the weights)."""
    disc, _ = _pair()
    state = disc.state_dict()
    disc.config.max_position_embeddings = 128
    bigger = transformers.ElectraForPreTraining(disc.config)
    bigger.load_state_dict({k: v for k, v in state.items() if "position_embeddings" not in k}, strict=False)
    bigger.electra.embeddings.position_embeddings.weight.data = state[
        "electra.embeddings.position_embeddings.weight"].clone()
    with pytest.raises(ValueError, match="position_embeddings.weight has shape \\(64, 16\\), but its "
                                         "config .with the overrides. makes it \\(128, 16\\)"):
        hf.from_hf(bigger)


@pytest.mark.parametrize("which", ["generator", "discriminator"])
def test_apply_kernels_names_a_labels_shape_mismatch(which):
    disc, gen = _pair()
    hf.apply_kernels(torch.nn.ModuleList([disc, gen]))
    ids, mask = batch()
    labels = torch.zeros(ids.shape[0], ids.shape[1] - 1, dtype=torch.long)
    model = gen if which == "generator" else disc
    with pytest.raises(ValueError, match=f"labels must have the shape of input_ids \\({ids.shape[0]}, "
                                         f"{ids.shape[1]}\\) .one label per token., got \\({ids.shape[0]}, "
                                         f"{ids.shape[1] - 1}\\)"):
        model(ids, attention_mask=mask, labels=labels)
