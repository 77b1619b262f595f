"""Round trips through the Hugging Face format, both members, both config generations."""

import json
import logging
import math
import re
import warnings

import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file

import twofold
from twofold.errors import TwofoldError
from twofold.hf import WEIGHTS, WEIGHTS_INDEX
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


# ----------------------------------------------------------------------------- helpers for edited checkpoints

def edit_config(directory, **changes):
    """Rewrite config.json with `changes` (a value of `DROP` removes the key)."""
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is DROP:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


DROP = object()


def edit_weights(path, edit):
    """Rewrite a safetensors file with `edit(tensors)` applied (metadata as transformers writes it)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def tokenizer_dir(tmp_path, name="tok"):
    """A WordLevel tokenizer directory: [CLS] 0, [SEP] 1, [PAD] 2, [MASK] 3, [UNK] 4, a 5, b 6."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "a", "b"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"])
    source = tmp_path / name
    source.mkdir()
    tok.save(str(source / "tokenizer.json"))
    (source / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "cls_token": "[CLS]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "mask_token": "[MASK]", "unk_token": "[UNK]"}))
    return source


class TransformersLog(logging.Handler):
    """Collects what transformers logs at WARNING or above while it is attached."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())

    def __enter__(self):
        transformers.logging.add_handler(self)
        return self

    def __exit__(self, *exc):
        transformers.logging.remove_handler(self)


# ----------------------------------------------------------------------------- what transformers reads

@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_transformers_loads_the_export_without_complaint(tmp_path, causal):
    """rope_parameters in the shape transformers validates: no unrecognised keys, nothing logged."""
    ours = model(causal, global_rope_theta=40_000.0, local_rope_theta=4_000.0)
    twofold.save(ours, tmp_path)
    with TransformersLog() as log:
        config = transformers.AutoConfig.from_pretrained(tmp_path)
        hf = AUTO[causal].from_pretrained(tmp_path)
    assert log.records == []
    assert config.rope_parameters == {"full_attention": {"rope_type": "default", "rope_theta": 40_000.0},
                                      "sliding_attention": {"rope_type": "default", "rope_theta": 4_000.0}}
    ids = torch.randint(5, 500, (1, 20))
    assert (logits(hf, ids) - logits(ours, ids)).abs().max() <= 1e-5


@pytest.mark.parametrize("kind", ["encoder", "decoder", "encoder-classifier", "decoder-classifier"])
def test_architectures_are_the_ones_transformers_writes(tmp_path, kind):
    causal = kind.startswith("decoder")
    ours = model(causal)
    if kind.endswith("classifier"):
        ours = SequenceClassifier(ours.config, num_labels=2).eval()
    twofold.save(ours, tmp_path / "ours")
    hf_twin(ours).save_pretrained(tmp_path / "theirs")
    written = {side: json.loads((tmp_path / side / "config.json").read_text()) for side in ("ours", "theirs")}
    assert written["ours"]["architectures"] == written["theirs"]["architectures"]
    assert written["ours"]["model_type"] == written["theirs"]["model_type"]


def test_bf16_export_says_float32_and_loads_at_the_requested_dtype(tmp_path):
    """config.json's dtype is float32, so transformers' default ("auto") loads bf16 weights as fp32."""
    ours = model(False).to(torch.bfloat16)
    twofold.save(ours, tmp_path)
    ids = torch.randint(5, 500, (1, 20))
    loaded = twofold.load(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert torch.equal(logits(loaded, ids), logits(ours, ids))
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert hf.dtype == torch.float32
    assert (logits(hf, ids) - logits(ours.float(), ids)).abs().max() <= 1e-5  # bf16 values, widened exactly


def test_classifier_labels_and_mean_pooling_reach_transformers(tmp_path):
    ours = SequenceClassifier(model(False).config, num_labels=3, pooling="mean").eval()
    twofold.save(ours, tmp_path, labels=["neg", "neutral", "pos"])
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert hf.config.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    assert hf.config.label2id == {"neg": 0, "neutral": 1, "pos": 2}
    assert hf.config.classifier_pooling == "mean"
    ids = torch.randint(5, 500, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        ref = ours(ids, attention_mask=mask).logits
        assert (hf(input_ids=ids, attention_mask=mask).logits - ref).abs().max() <= 1e-5
        assert torch.equal(twofold.load(tmp_path)(ids, attention_mask=mask).logits, ref)


@pytest.mark.parametrize(("causal", "pooling", "message"), [
    (False, "last", "encoder classifier trained with 'last' pooling has no transformers equivalent (it supports "
                    "cls or mean); fine-tune with pooling 'mean'"),
    (True, "cls", "decoder classifier trained with 'cls' pooling has no transformers equivalent (it supports "
                  "last); fine-tune with pooling 'last'"),
], ids=["encoder", "decoder"])
def test_pooling_transformers_cannot_compute_is_refused(tmp_path, causal, pooling, message):
    ours = SequenceClassifier(model(causal).config, num_labels=2, pooling=pooling)
    with pytest.raises(TwofoldError, match=re.escape(message)):
        twofold.save(ours, tmp_path)


def test_decoder_attention_bias_splits_into_q_k_v(tmp_path):
    ours = model(True, attention_bias=True)
    twofold.save(ours, tmp_path)
    hf, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.randint(5, 500, (1, 20))
    assert (logits(hf, ids) - logits(ours, ids)).abs().max() <= 1e-5
    assert torch.equal(logits(twofold.load(tmp_path), ids), logits(ours, ids))


def test_untied_output_embeddings_round_trip(tmp_path):
    ours = model(False, tie_word_embeddings=False)
    twofold.save(ours, tmp_path)
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert not hf.config.tie_word_embeddings
    ids = torch.randint(5, 500, (1, 20))
    assert (logits(hf, ids) - logits(ours, ids)).abs().max() <= 1e-5
    assert torch.equal(logits(twofold.load(tmp_path), ids), logits(ours, ids))


def test_tied_checkpoint_that_also_stores_the_decoder_weight_loads(tmp_path):
    """Some writers store the tied output matrix as well; it is the embeddings, not an unknown key."""
    ours = model(False)
    twofold.save(ours, tmp_path)
    edit_weights(tmp_path / WEIGHTS, lambda t: t.update(
        {"decoder.weight": t["model.embeddings.tok_embeddings.weight"].clone()}))
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path)
    ids = torch.randint(5, 500, (1, 20))
    assert (logits(hf, ids) - logits(ours, ids)).abs().max() <= 1e-5
    assert torch.equal(logits(twofold.load(tmp_path), ids), logits(ours, ids))


def test_save_creates_missing_parent_folders(tmp_path):
    ours = model(False)
    twofold.save(ours, tmp_path / "a" / "b")
    ids = torch.randint(5, 500, (1, 10))
    assert torch.equal(logits(twofold.load(tmp_path / "a" / "b"), ids), logits(ours, ids))


# ----------------------------------------------------------------------------- configs transformers writes

@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_transformers_layer_types_and_rope_thetas_load(tmp_path, causal):
    """transformers v5 writes layer_types and rope_parameters only (no legacy keys); both are honoured."""
    from twofold.model.config import GLOBAL, LOCAL

    ours = model(causal, layer_types=(LOCAL, GLOBAL, LOCAL), global_rope_theta=30_000.0, local_rope_theta=700.0)
    reference = hf_twin(ours)
    reference.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert "global_rope_theta" not in written and written["global_attn_every_n_layers"] == 2
    loaded = twofold.load(tmp_path)
    assert loaded.config.layer_types == (LOCAL, GLOBAL, LOCAL)
    assert (loaded.config.global_rope_theta, loaded.config.local_rope_theta) == (30_000.0, 700.0)
    ids = torch.randint(5, 500, (2, 25))
    assert (logits(loaded, ids) - logits(reference, ids)).abs().max() <= 1e-5


def test_gelu_python_and_absent_activations_load(tmp_path):
    """transformers defaults both activations to gelu and computes gelu_python the same (exact) way."""
    ours = model(False)
    twofold.save(ours, tmp_path)
    edit_config(tmp_path, hidden_activation="gelu_python", classifier_activation=DROP)
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path)
    ids = torch.randint(5, 500, (1, 20))
    assert (logits(hf, ids) - logits(ours, ids)).abs().max() <= 1e-5
    assert torch.equal(logits(twofold.load(tmp_path), ids), logits(ours, ids))
    edit_config(tmp_path, hidden_activation=DROP)
    assert torch.equal(logits(twofold.load(tmp_path), ids), logits(ours, ids))


def test_eos_token_id_list_takes_the_first(tmp_path):
    twofold.save(model(True), tmp_path)
    edit_config(tmp_path, eos_token_id=[7, 9])
    assert transformers.AutoConfig.from_pretrained(tmp_path).eos_token_id == [7, 9]
    assert twofold.load(tmp_path).config.eos_token_id == 7


def test_config_without_vocab_size_takes_transformers_default(tmp_path):
    from twofold.model import ModelConfig

    ours = TwofoldModel(ModelConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                    num_attention_heads=2, local_attention=8)).eval()
    twofold.save(ours, tmp_path)
    edit_config(tmp_path, vocab_size=DROP)
    assert transformers.AutoConfig.from_pretrained(tmp_path).vocab_size == 50368
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = twofold.load(tmp_path)
    assert loaded.config.vocab_size == 50368 and loaded.config.mask_token_id == 50284
    ids = torch.randint(5, 50000, (1, 10))
    assert torch.equal(logits(loaded, ids), logits(ours, ids))


def test_special_ids_outside_the_vocabulary_load_without_them(tmp_path):
    ours = model(False)
    twofold.save(ours, tmp_path)
    edit_config(tmp_path, mask_token_id=512, sep_token_id=700)  # the vocabulary is 512: 512 is just outside
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path)
    path = tmp_path / "config.json"
    with pytest.warns(UserWarning, match=re.escape(
            f"{path}: sep_token_id 700, mask_token_id 512 outside the vocabulary of 512; loaded without them")):
        loaded = twofold.load(tmp_path)
    assert loaded.config.mask_token_id is None and loaded.config.sep_token_id is None
    assert loaded.config.pad_token_id == ours.config.pad_token_id
    ids = torch.randint(5, 500, (1, 20))
    assert (logits(hf, ids) - logits(loaded, ids)).abs().max() <= 1e-5


def test_mask_token_id_comes_from_tokenizer_json_when_the_config_lacks_it(tmp_path):
    twofold.save(model(False), tmp_path, tokenizer=tokenizer_dir(tmp_path))
    assert json.loads((tmp_path / "tokenizer.json").read_text())["added_tokens"][0]["content"] == "[CLS]"
    edit_config(tmp_path, mask_token_id=DROP)  # transformers' default (50284) is outside this vocabulary
    with pytest.warns(UserWarning, match="mask_token_id 50284 outside"):
        assert twofold.load(tmp_path).config.mask_token_id == 3
    edit_config(tmp_path, mask_token_id=None)
    with pytest.warns(UserWarning, match="mask_token_id 50284 outside"):
        assert twofold.load(tmp_path).config.mask_token_id == 3
    edit_config(tmp_path, mask_token_id=4)  # a valid id in the config wins over the tokenizer's
    assert twofold.load(tmp_path).config.mask_token_id == 4
    tokenizer = json.loads((tmp_path / "tokenizer.json").read_text())
    (tmp_path / "tokenizer.json").write_text(json.dumps({**tokenizer, "added_tokens": [
        t for t in tokenizer["added_tokens"] if t["content"] != "[MASK]"]}))
    edit_config(tmp_path, mask_token_id=DROP)
    with pytest.warns(UserWarning, match="mask_token_id 50284 outside"):
        assert twofold.load(tmp_path).config.mask_token_id is None
    tokenizer.pop("added_tokens")
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.warns(UserWarning, match="mask_token_id 50284 outside"):
        assert twofold.load(tmp_path).config.mask_token_id is None
    (tmp_path / "tokenizer.json").unlink()
    with pytest.warns(UserWarning, match="mask_token_id 50284 outside"):
        assert twofold.load(tmp_path).config.mask_token_id is None


# ----------------------------------------------------------------------------- tokenizers

def test_decoder_export_frames_text_with_bos_only(tmp_path):
    out = tmp_path / "export"
    twofold.save(model(True), out, tokenizer=tokenizer_dir(tmp_path) / "tokenizer.json")  # a file: its folder
    loaded_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert loaded_tok("a b")["input_ids"] == [0, 5, 6]


def test_tokenizer_object_is_saved_with_its_own_save_pretrained(tmp_path):
    source = tokenizer_dir(tmp_path)
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(source)
    out = tmp_path / "export"
    twofold.save(model(False), out, tokenizer=tok)
    assert transformers.AutoTokenizer.from_pretrained(out)("a b a")["input_ids"] == tok("a b a")["input_ids"]


# ----------------------------------------------------------------------------- weights files

def test_shards_are_filled_greedily_and_named_as_transformers_names_them(tmp_path):
    ours = model(False)
    hf_twin(ours).save_pretrained(tmp_path / "theirs", max_shard_size="200KB")
    theirs = json.loads((tmp_path / "theirs" / WEIGHTS_INDEX).read_text())
    with safe_open(str(next((tmp_path / "theirs").glob("model-*.safetensors"))), "pt") as handle:
        their_metadata = handle.metadata()
    twofold.save(ours, tmp_path / "whole")
    with safe_open(str(tmp_path / "whole" / WEIGHTS), "pt") as handle:
        assert handle.metadata() == their_metadata
        size = {name: handle.get_slice(name).get_shape() for name in handle.keys()}
    size = {name: 4 * math.prod(shape) for name, shape in size.items()}
    layer1 = sum(v for k, v in size.items() if k.startswith("model.layers.1."))
    first_two = size["model.embeddings.tok_embeddings.weight"] + size["model.embeddings.norm.weight"]
    for limit in (first_two, layer1, 100_000):  # the first two: one shard or another filled exactly
        out = tmp_path / f"limit-{limit}"
        twofold.save(ours, out, max_shard_bytes=limit)
        index = json.loads((out / WEIGHTS_INDEX).read_text())
        assert index["metadata"]["total_size"] == theirs["metadata"]["total_size"] == sum(size.values())
        files = list(dict.fromkeys(index["weight_map"].values()))
        n = len(files)
        assert files == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
        assert sorted(p.name for p in out.glob("*.safetensors")) == files
        shards = [[name for name, file in index["weight_map"].items() if file == f] for f in files]
        totals = [sum(size[name] for name in shard) for shard in shards]
        for i, (shard, total) in enumerate(zip(shards, totals)):
            with safe_open(str(out / files[i]), "pt") as handle:
                assert sorted(handle.keys()) == sorted(shard) and handle.metadata() == their_metadata
            assert total <= limit or len(shard) == 1
            if i + 1 < n:
                assert total + size[shards[i + 1][0]] > limit  # the next tensor did not fit
        ids = torch.randint(5, 500, (1, 12))
        assert torch.equal(logits(twofold.load(out), ids), logits(ours, ids))
    assert len(shards) > 2
    out = tmp_path / "exact"
    twofold.save(ours, out, max_shard_bytes=sum(size.values()))  # fits exactly: one file
    assert sorted(p.name for p in out.iterdir()) == ["config.json", WEIGHTS]


def test_any_single_safetensors_file_is_the_weights(tmp_path):
    ours = model(False)
    twofold.save(ours, tmp_path)
    (tmp_path / WEIGHTS).rename(tmp_path / "weights.safetensors")
    ids = torch.randint(5, 500, (1, 10))
    assert torch.equal(logits(twofold.load(tmp_path), ids), logits(ours, ids))


# ----------------------------------------------------------------------------- more bad input

def test_torn_config_names_the_file_and_the_fix(tmp_path):
    twofold.save(model(False), tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "modernbert", ')
    with pytest.raises(TwofoldError, match=re.escape(f"{tmp_path / 'config.json'}: not valid JSON") + ".*"
                       + re.escape("; fix or replace the file (is this a Hugging Face model directory?)")):
        twofold.load(tmp_path)


@pytest.mark.parametrize(("key", "value"), [("hidden_activation", "silu"), ("classifier_activation", "relu")])
def test_unsupported_activation_names_the_config_file(tmp_path, key, value):
    twofold.save(model(False), tmp_path)
    edit_config(tmp_path, **{key: value})
    with pytest.raises(TwofoldError, match=re.escape(f"{tmp_path / 'config.json'}: {key} '{value}' is not supported")):
        twofold.load(tmp_path)


def test_unsupported_rope_type_is_refused(tmp_path):
    twofold.save(model(False), tmp_path)
    rope = json.loads((tmp_path / "config.json").read_text())["rope_parameters"]
    edit_config(tmp_path, rope_parameters={**rope, "sliding_attention": {"rope_type": "linear", "factor": 2.0,
                                                                         "rope_theta": 10_000.0}})
    with pytest.raises(TwofoldError, match="rope_type 'linear' for sliding_attention is not supported"):
        twofold.load(tmp_path)


def test_null_sliding_window_is_refused(tmp_path):
    twofold.save(model(False), tmp_path)
    edit_config(tmp_path, local_attention=None)
    with pytest.raises(TwofoldError, match="local_attention is null"):
        twofold.load(tmp_path)


def test_missing_body_weight_is_a_clear_error(tmp_path):
    twofold.save(model(False), tmp_path)
    edit_weights(tmp_path / WEIGHTS, lambda t: t.pop("model.layers.0.mlp.Wo.weight"))
    with pytest.raises(TwofoldError, match=re.escape(
            f"{tmp_path}: weights missing from the checkpoint: ['model.layers.0.mlp.Wo.weight']")):
        twofold.load(tmp_path)


def test_missing_classifier_bias_keeps_its_fresh_initialisation(tmp_path):
    ours = SequenceClassifier(model(False).config, num_labels=2).eval()
    twofold.save(ours, tmp_path)
    edit_weights(tmp_path / WEIGHTS, lambda t: t.pop("classifier.bias"))
    with pytest.warns(UserWarning, match=re.escape("no weights for ['classifier.bias']")):
        loaded = twofold.load(tmp_path)
    assert torch.equal(loaded.classifier.weight, ours.classifier.weight)


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_wrong_qkv_shape_names_the_file(tmp_path, causal):
    twofold.save(model(causal), tmp_path)
    if causal:
        parts = [f"model.layers.0.attn.{p}.weight" for p in ("q_proj", "k_proj", "v_proj")]
        edit_weights(tmp_path / WEIGHTS, lambda t: t.update({p: torch.zeros(32, 64) for p in parts}))
    else:
        edit_weights(tmp_path / WEIGHTS, lambda t: t.update({"model.layers.0.attn.Wqkv.weight": torch.zeros(96, 64)}))
    with pytest.raises(TwofoldError, match=re.escape(
            f"{tmp_path / WEIGHTS}: tensor model.layers.0.attn.Wqkv.weight has shape (96, 64) but config.json "
            "implies (192, 64)")):
        twofold.load(tmp_path)


def test_wrong_shape_in_base_model_weights_names_the_directory(tmp_path):
    reference = hf_twin(model(False))
    reference.model.save_pretrained(tmp_path)  # names without "model.": the file's key is not ours
    edit_weights(tmp_path / WEIGHTS, lambda t: t.update({"layers.0.mlp.Wi.weight": torch.zeros(10, 64)}))
    with pytest.raises(TwofoldError,
                       match=re.escape(f"{tmp_path}: tensor model.layers.0.mlp.Wi.weight has shape (10, 64)")):
        twofold.load(tmp_path)


def test_sharded_index_problems_name_the_index(tmp_path):
    twofold.save(model(False), tmp_path, max_shard_bytes=100_000)
    index = tmp_path / WEIGHTS_INDEX
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    shards[1].unlink()
    with pytest.raises(TwofoldError, match=re.escape(f"{index}: lists shards that are not in the directory: "
                                                     f"['{shards[1].name}']")):
        twofold.load(tmp_path)
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(TwofoldError, match=re.escape(f"{index}: lists shards that are not in the directory: "
                                                     "none listed")):
        twofold.load(tmp_path)


def test_pt_pickle_weights_are_refused_by_name(tmp_path):
    twofold.save(model(False), tmp_path)
    (tmp_path / WEIGHTS).unlink()
    (tmp_path / "model.pt").write_bytes(b"cos\nsystem\n(S'touch PWNED'\ntR.")
    with pytest.raises(TwofoldError, match=re.escape("only pickle weights (model.pt); twofold never unpickles")):
        twofold.load(tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_config_dict_errors_name_config_json_by_default():
    from twofold.hf import config_from_hf

    with pytest.raises(TwofoldError, match=r"^config\.json: model_type 'bert' is not supported"):
        config_from_hf({"model_type": "bert"})


def test_pad_token_id_none_exports_a_config_transformers_loads(tmp_path):
    """A model loaded from a checkpoint whose pad id lay outside its vocabulary has pad_token_id None."""
    ours = model(False, pad_token_id=None)
    twofold.save(ours, tmp_path)
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert hf.config.pad_token_id is None
    ids = torch.randint(5, 500, (1, 12))
    assert (logits(hf, ids) - logits(ours, ids)).abs().max() <= 1e-5
