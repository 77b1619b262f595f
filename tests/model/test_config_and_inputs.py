"""Presets, config validation and input checks."""

import re

import pytest
import torch

from twofold.errors import TwofoldError
from twofold.model import ModelConfig, TwofoldModel, preset
from twofold.model.config import GLOBAL, LOCAL

# Published parameter counts with tied embeddings (millions).
PUBLISHED = {"ettin-17m": 16.9, "ettin-32m": 32.1, "ettin-68m": 68.5, "ettin-150m": 149.7,
             "ettin-400m": 395.9, "ettin-1b": 1031.3, "mmbert-small": 140.9, "mmbert-base": 307.8}


@pytest.mark.parametrize("name", PUBLISHED)
def test_preset_parameter_counts_match_published(name):
    with torch.device("meta"):  # shapes only: no memory for the 1B model
        model = TwofoldModel(preset(name))
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(count - PUBLISHED[name]) / PUBLISHED[name] < 0.02, (name, count)


def test_encoder_and_decoder_share_every_parameter_name_and_shape():
    encoder = TwofoldModel(preset("tiny"))
    decoder = TwofoldModel(preset("tiny", causal=True))
    assert {k: v.shape for k, v in encoder.state_dict().items()} == \
        {k: v.shape for k, v in decoder.state_dict().items()}


def test_alternating_layers_and_windows():
    config = preset("ettin-17m")
    assert config.layer_types == (GLOBAL, LOCAL, LOCAL, GLOBAL, LOCAL, LOCAL, GLOBAL)
    assert config.window_radius == 64 and config.head_dim == 64


def test_init_follows_modernbert():
    model = TwofoldModel(preset("ettin-17m"))
    layer = model.model.layers[1]
    std_out = 0.02 / (2 * 7) ** 0.5
    assert abs(layer.attn.Wqkv.weight.std().item() - 0.02 * 0.88) < 0.002  # truncated at 2 std
    assert abs(layer.attn.Wo.weight.std().item() - std_out * 0.88) < 0.0005
    assert layer.attn.Wqkv.weight.abs().max() <= 2 * 0.02
    assert torch.all(layer.mlp_norm.weight == 1) and torch.all(model.decoder.bias == 0)
    assert model.decoder.weight is model.model.embeddings.tok_embeddings.weight


@pytest.mark.parametrize("bad, match", [
    (dict(hidden_size=100, num_attention_heads=3), "not a multiple"),
    (dict(num_hidden_layers=0), "num_hidden_layers must be positive"),
    (dict(vocab_size=100, pad_token_id=200), "pad_token_id 200 is outside the vocabulary"),
    (dict(num_hidden_layers=2, layer_types=("full_attention",)), "layer_types must list 2"),
    (dict(classifier_pooling="max"), "classifier_pooling"),
])
def test_config_validation(bad, match):
    with pytest.raises(TwofoldError, match=match):
        ModelConfig(**bad)


@pytest.mark.parametrize("bad, match", [
    (dict(hidden_size="64"), "hidden_size is '64'; it must be int"),
    (dict(num_hidden_layers=True), "num_hidden_layers is True; it must be int"),
    (dict(causal=1), "causal is 1; it must be bool"),
    (dict(global_rope_theta="1e4"), "global_rope_theta is '1e4'; it must be float"),
    (dict(vocab_size=100, mask_token_id=100), "mask_token_id 100 is outside the vocabulary [0, 100)"),
    (dict(vocab_size=100, cls_token_id=-1), "cls_token_id -1 is outside the vocabulary"),
    (dict(mlp_dropout=1.0), "mlp_dropout = 1.0 must be in [0, 1)"),
    (dict(attention_dropout=-0.1), "attention_dropout = -0.1 must be in [0, 1)"),
    (dict(local_rope_theta=0), "local_rope_theta = 0 must be positive"),
])
def test_each_field_s_type_and_range_is_checked_at_its_edge(bad, match):
    with pytest.raises(TwofoldError, match=re.escape(match)):
        preset("tiny", **bad)


def test_the_last_values_of_each_range_are_accepted():
    config = preset("tiny", vocab_size=100, pad_token_id=99, mask_token_id=0, mlp_dropout=0.99, global_rope_theta=0.5,
                    local_rope_theta=1, attention_output_dropout=None)
    assert config.global_rope_theta == 0.5 and config.output_dropout == config.attention_dropout


def test_for_tokenizer_rounds_the_vocabulary_up_to_64_and_takes_the_tokenizers_ids():
    shape = preset("tiny", vocab_size=64)
    ids = {"cls": 5, "sep": 6, "pad": 7, "mask": 8, "bos": 5, "eos": 6, "unk": 9}
    config = shape.for_tokenizer(100, ids)
    assert config.vocab_size == 128  # 100 rounded up to a multiple of 64
    assert (config.cls_token_id, config.sep_token_id, config.pad_token_id, config.mask_token_id,
            config.bos_token_id, config.eos_token_id) == (5, 6, 7, 8, 5, 6)
    assert shape.for_tokenizer(128, ids).vocab_size == 128 and shape.for_tokenizer(129, ids).vocab_size == 192
    assert shape.for_tokenizer(30, {}).vocab_size == 64  # never below the shape's own table
    assert shape.for_tokenizer(30, {"pad": 9}).pad_token_id == 9 and shape.for_tokenizer(30, {}) == shape


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(TwofoldError, match="ettin-17m"):
        preset("ettin-5m")


def test_an_unknown_override_of_a_preset_names_the_valid_fields():
    valid = r"preset 'tiny': unknown field hidden_dim, layers; valid fields: .*hidden_size"
    with pytest.raises(TwofoldError, match=valid):
        preset("tiny", hidden_dim=3, layers=2)


def test_from_dict_round_trip_and_unknown_keys():
    config = preset("tiny", causal=True)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(TwofoldError, match="unknown keys \\['hidden_dim'\\]"):
        ModelConfig.from_dict({"hidden_dim": 3})


def test_out_of_range_token_ids_are_refused():
    model = TwofoldModel(preset("tiny"))
    with pytest.raises(TwofoldError, match="token id 512 is outside"):
        model(torch.tensor([[5, 512]]))
    with pytest.raises(TwofoldError, match="token id -1 is outside"):
        model(torch.tensor([[5, -1]]))


@pytest.mark.parametrize("cu, match", [
    ([0, 3, 9], "end at the number of tokens"),
    ([1, 3, 10], "start at 0"),
    ([0, 6, 4, 10], "non-decreasing"),
])
def test_cu_seqlens_that_do_not_match_the_tokens_are_refused(cu, match):
    model = TwofoldModel(preset("tiny"))
    with pytest.raises(TwofoldError, match=match):
        model(torch.randint(5, 500, (10,)), cu_seqlens=torch.tensor(cu, dtype=torch.int32))


def test_max_seqlen_too_small_is_refused():
    model = TwofoldModel(preset("tiny"))
    with pytest.raises(TwofoldError, match="max_seqlen 3"):
        model(torch.randint(5, 500, (10,)), cu_seqlens=torch.tensor([0, 6, 10], dtype=torch.int32), max_seqlen=3)
