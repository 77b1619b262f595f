"""What a model directory is, as the suites see it: every sign of a decoder on its own, embedders
and classifiers of either side, the parameters counted from the safetensors headers, and the labels
a member's results carry."""

import json

import pytest
import torch
from safetensors.torch import save_file

from twofold.errors import TwofoldError
from twofold.eval.member import CLASSIFIER, DECODER, EMBEDDER, ENCODER, Member, kind_of, member_of


@pytest.mark.parametrize("config, sentence_transformers, expected", [
    ({"model_type": "modernbert", "architectures": ["ModernBertForMaskedLM"]}, False, (ENCODER, False)),
    ({"model_type": "modernbert-decoder"}, False, (DECODER, True)),
    ({"architectures": ["LlamaForCausalLM"]}, False, (DECODER, True)),
    ({"architectures": ["ModernBertModel", "ModernBertDecoderModel"]}, False, (DECODER, True)),
    ({"is_decoder": True}, False, (DECODER, True)),
    ({"is_decoder": False, "architectures": None}, False, (ENCODER, False)),
    ({"architectures": ["ModernBertForSequenceClassification"]}, False, (CLASSIFIER, False)),
    ({"architectures": ["ModernBertDecoderForSequenceClassification"]}, False, (CLASSIFIER, True)),
    ({"architectures": ["ModernBertModel"]}, True, (EMBEDDER, False)),
    ({"model_type": "modernbert-decoder"}, True, (EMBEDDER, True)),
])
def test_each_sign_of_a_decoder_and_each_kind_of_directory(tmp_path, config, sentence_transformers, expected):
    (tmp_path / "config.json").write_text(json.dumps(config))
    if sentence_transformers:
        (tmp_path / "modules.json").write_text("[]")
    assert kind_of(tmp_path) == expected


def test_a_directory_without_a_readable_config_is_refused_in_one_line(tmp_path):
    with pytest.raises(TwofoldError, match=r"no config.json; pass a Hugging Face model directory or a training run$"):
        kind_of(tmp_path)
    (tmp_path / "config.json").write_text("{torn")
    with pytest.raises(TwofoldError, match=r"config.json: not valid JSON; export the model again$"):
        kind_of(tmp_path)


def test_a_member_counts_the_parameters_of_every_safetensors_file_and_labels_its_results(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["ModernBertForMaskedLM"]}))
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, tmp_path / "model-00001.safetensors")
    (tmp_path / "1_Dense").mkdir()
    save_file({"c": torch.zeros(2, 2, 2)}, tmp_path / "1_Dense" / "model.safetensors")
    member = member_of(tmp_path)
    assert (member.name, member.kind, member.parameters, member.checkpoint, member.tokens, member.causal) == (
        tmp_path.name, ENCODER, 12 + 5 + 8, "", None, False)
    assert member_of(tmp_path, "enc", "decay2", 900).label == "enc@decay2"
    result = member_of(tmp_path, "enc", "decay2", 900).result("t", {"accuracy": 0.5}, 1, 10)
    assert (result.model, result.checkpoint, result.tokens, result.variant, result.kind, result.parameters,
            result.details, result.column) == ("enc", "decay2", 900, "", ENCODER, 25, {}, "enc@decay2")
    decoder = Member(None, "dec", EMBEDDER, causal=True)
    assert decoder.member_kind == DECODER and decoder.label == "dec"
    assert decoder.result("t", {}, 0, 1, "last", {"pooling": "last"}, suite="mteb").details == {"pooling": "last"}
