"""Round trips through the Hugging Face format, both members, both config generations."""

import json
import warnings

import pytest
import torch
import transformers
from safetensors.torch import save_file

import twofold
from twofold.errors import TwofoldError
from twofold.hf import WEIGHTS
from twofold.model import TwofoldModel, preset
from twofold.model.heads import SequenceClassifier

from .hf_reference import hf_twin

AUTO = {False: transformers.AutoModelForMaskedLM, True: transformers.AutoModelForCausalLM}


def model(causal: bool, **overrides) -> TwofoldModel:
    shape = dict(local_attention=8, global_attn_every_n_layers=2, num_hidden_layers=3)
    return TwofoldModel(preset("tiny", causal=causal, **{**shape, **overrides})).eval()


def logits(m, ids):
    with torch.no_grad():
        out = m(ids) if isinstance(m, TwofoldModel) else m(input_ids=ids)
    return out.logits


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_twofold_save_loads_in_transformers_auto_classes(tmp_path, causal):
    ours = model(causal, global_rope_theta=50_000.0, local_rope_theta=5_000.0)
    twofold.save(ours, tmp_path)
    hf, info = AUTO[causal].from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids = torch.randint(5, 500, (2, 30))
    assert (logits(hf, ids) - logits(ours, ids)).abs().max() <= 1e-5
    base, base_info = transformers.AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not base_info["missing_keys"]  # the head is simply not part of the base model
    with torch.no_grad():
        hidden = base(input_ids=ids).last_hidden_state
    assert (hidden - ours.encode(ids)).abs().max() <= 1e-5


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_transformers_save_loads_in_twofold(tmp_path, causal):
    reference = hf_twin(model(causal))
    reference.save_pretrained(tmp_path)
    loaded = twofold.load(tmp_path)
    assert loaded.config.causal is causal
    ids = torch.randint(5, 500, (3, 25))
    assert (logits(loaded, ids) - logits(reference, ids)).abs().max() <= 1e-5


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_legacy_config_generation_loads(tmp_path, causal):
    """Configs written before transformers v5: global_attn_every_n_layers + *_rope_theta."""
    ours = model(causal, global_rope_theta=20_000.0, local_rope_theta=3_000.0)
    twofold.save(ours, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("layer_types", "rope_parameters", "twofold_version"):
        config.pop(key)
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = twofold.load(tmp_path)
    assert loaded.config.layer_types == ours.config.layer_types
    assert (loaded.config.global_rope_theta, loaded.config.local_rope_theta) == (20_000.0, 3_000.0)
    ids = torch.randint(5, 500, (1, 20))
    assert torch.equal(logits(loaded, ids), logits(ours, ids))


def test_sharded_checkpoint_round_trip(tmp_path):
    ours = model(False)
    twofold.save(ours, tmp_path, max_shard_bytes=40_000)
    assert (tmp_path / "model.safetensors.index.json").exists() and not (tmp_path / WEIGHTS).exists()
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path)
    loaded = twofold.load(tmp_path)
    ids = torch.randint(5, 500, (1, 20))
    assert torch.equal(logits(loaded, ids), logits(ours, ids))
    assert (logits(hf, ids) - logits(ours, ids)).abs().max() <= 1e-5


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_classifier_round_trip(tmp_path, causal):
    ours = SequenceClassifier(preset("tiny", causal=causal), num_labels=4).eval()
    twofold.save(ours, tmp_path)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    loaded = twofold.load(tmp_path)
    assert isinstance(loaded, SequenceClassifier) and loaded.num_labels == 4
    ids = torch.randint(5, 500, (2, 12))
    with torch.no_grad():
        assert (hf(input_ids=ids).logits - ours(ids).logits).abs().max() <= 1e-5
        assert torch.equal(loaded(ids).logits, ours(ids).logits)


def test_base_model_weights_load_with_a_fresh_head(tmp_path):
    reference = hf_twin(model(False))
    reference.model.save_pretrained(tmp_path)  # ModernBertModel: no head, no "model." prefix
    with pytest.warns(UserWarning, match="fresh initialisation"):
        loaded = twofold.load(tmp_path)
    ids = torch.randint(5, 500, (1, 15))
    with torch.no_grad():
        assert (loaded.encode(ids) - reference.model(input_ids=ids).last_hidden_state).abs().max() <= 1e-5


def test_tokenizer_files_travel_with_the_export(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "a", "b"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    source = tmp_path / "tok"
    source.mkdir()
    tok.save(str(source / "tokenizer.json"))
    (source / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "cls_token": "[CLS]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "mask_token": "[MASK]", "unk_token": "[UNK]"}))
    out = tmp_path / "export"
    twofold.save(model(False), out, tokenizer=source)
    loaded_tok = transformers.AutoTokenizer.from_pretrained(out)
    # the export frames text as the member does: the encoder's [CLS] a b [SEP]
    assert loaded_tok.mask_token_id == 3 and loaded_tok("a b")["input_ids"] == [0, 5, 6, 1]
    assert twofold.load(out).config.mask_token_id == 3


# ----------------------------------------------------------------------------- bad input

def test_missing_config_is_a_clear_error(tmp_path):
    with pytest.raises(TwofoldError, match="no config.json"):
        twofold.load(tmp_path)


def test_missing_weights_is_a_clear_error(tmp_path):
    twofold.save(model(False), tmp_path)
    (tmp_path / WEIGHTS).unlink()
    with pytest.raises(TwofoldError, match="no model.safetensors"):
        twofold.load(tmp_path)


def test_unsupported_model_type_is_a_clear_error(tmp_path):
    twofold.save(model(False), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(TwofoldError, match="model_type 'bert' is not supported"):
        twofold.load(tmp_path)


def test_shape_mismatch_names_the_file_and_tensor(tmp_path):
    twofold.save(model(False), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
    with pytest.raises(TwofoldError, match=r"model.safetensors: tensor model.layers.0.mlp.Wi.weight has shape"):
        twofold.load(tmp_path)


def test_pickle_weights_are_refused_never_opened(tmp_path):
    twofold.save(model(False), tmp_path)
    (tmp_path / WEIGHTS).unlink()
    # A file that would run code if unpickled: loading must refuse it by name, not open it.
    (tmp_path / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'touch PWNED'\ntR.")
    with pytest.raises(TwofoldError, match="never unpickles"):
        twofold.load(tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_unknown_tensors_are_a_clear_error(tmp_path):
    twofold.save(model(False), tmp_path)
    save_file({"bert.embeddings.word_embeddings.weight": torch.zeros(2, 2)}, str(tmp_path / WEIGHTS))
    with pytest.raises(TwofoldError, match="do not belong to a ModernBERT model"):
        twofold.load(tmp_path)


def test_no_warnings_on_a_clean_round_trip(tmp_path):
    twofold.save(model(True), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twofold.load(tmp_path)
