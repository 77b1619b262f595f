"""What a fine-tune starts from: an HF export, a hub id, a run's checkpoint or a pair, each ending as a
directory the libraries load, with which member it is and a record of where it came from."""

import json
import shutil
from pathlib import Path

import pytest

from twofold.errors import TwofoldError
from twofold.files import sha256_file
from twofold.finetune.inputs import _causal_of, resolve, resolve_pair

from .test_sweep import make_run


@pytest.mark.parametrize("config, causal", [
    ({"model_type": "modernbert-decoder"}, True),
    ({"model_type": "modernbert", "architectures": ["ModernBertDecoderForCausalLM"]}, False),  # the type decides
    ({"model_type": "modernbert-decoder", "architectures": ["ModernBertForMaskedLM"]}, True),
    ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, True),
    ({"architectures": ["Tokens", "LlamaForCausalLM"]}, True),  # any of the architectures
    ({"model_type": "bert", "architectures": ["BertForMaskedLM"]}, False),
    ({"architectures": ["BertForMaskedLM"]}, False),
    ({"model_type": "t5", "architectures": None}, False),  # a typed model that names no causal LM
    ({"model_type": "gpt2", "architectures": ["MyCausal", "LMHead"]}, False),  # the words of one architecture
])
def test_which_member_a_config_describes(config, causal):
    assert _causal_of(config, "where") is causal


@pytest.mark.parametrize("config", [{}, {"architectures": None}, {"architectures": ["Pooler"]}, {"model_type": ""}])
def test_a_config_that_names_no_model_is_refused_naming_where(config):
    with pytest.raises(TwofoldError, match=r"^here/m: config.json names no model_type; is this a Hugging Face model "
                                           r"directory\?$"):
        _causal_of(config, "here/m")


def test_an_hf_export_is_used_in_place_with_the_checksums_of_its_json_and_weights(exports, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(exports["decoder"], folder)
    (folder / "README.md").write_text("not a checksummed file")
    (folder / "extra.json").mkdir()  # a folder, whatever its name
    base = resolve(folder, tmp_path / "scratch")
    assert (base.path, base.name, base.causal) == (str(folder), "export", True)
    assert base.source == {"kind": "hf", "path": str(folder.resolve()),
                           "sha256": {p.name: sha256_file(p) for p in sorted(folder.iterdir())
                                      if p.is_file() and p.suffix in (".json", ".safetensors")}}
    assert list(base.source["sha256"]) == sorted(base.source["sha256"])
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(base.source["sha256"])
    assert "README.md" not in base.source["sha256"] and "extra.json" not in base.source["sha256"]
    assert resolve(exports["encoder"], tmp_path / "scratch", name="enc").name == "enc"
    assert resolve(exports["encoder"], tmp_path / "scratch").causal is False
    assert not (tmp_path / "scratch").exists()  # nothing exported for an HF directory


def test_an_hf_directory_whose_config_names_no_model_is_refused_naming_it(exports, tmp_path):
    folder = tmp_path / "untyped"
    shutil.copytree(exports["encoder"], folder)
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(TwofoldError, match=rf"^{folder}: config.json names no model_type"):
        resolve(folder, tmp_path / "scratch")


def test_a_pair_given_as_one_model_is_refused_naming_a_member(exports, tmp_path):
    pair = Path(exports["encoder"]).parent
    with pytest.raises(TwofoldError, match=rf"^model {pair} is .*; give .*, e.g. {pair / 'encoder'}$"):
        resolve(pair, tmp_path / "scratch")
    with pytest.raises(TwofoldError, match=rf"^model {tmp_path / 'absent'}: "):
        resolve(tmp_path / "absent", tmp_path / "scratch")


def test_an_hf_export_without_its_tokenizer_is_refused(exports, tmp_path):
    folder = tmp_path / "bare"
    shutil.copytree(exports["encoder"], folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(TwofoldError, match=rf"^{folder}: no tokenizer.json beside the model; export it with its "
                                           "tokenizer"):
        resolve(folder, tmp_path / "scratch")


def test_a_hub_id_is_read_through_transformers_config(monkeypatch, exports, tmp_path):
    """No internet here: transformers' AutoConfig is handed the id, and answers with a local export's config
    (or the OSError it raises for an unknown id)."""
    from transformers import AutoConfig

    asked = []
    real = AutoConfig.from_pretrained

    def from_pretrained(given, *args, **kwargs):
        asked.append(given)
        if given == "org/missing":
            raise OSError("org/missing is not a valid model identifier")
        if given == "org/untyped":
            from transformers import PretrainedConfig

            return PretrainedConfig()  # no model_type, no architectures
        return real(exports["decoder"])

    monkeypatch.setattr(AutoConfig, "from_pretrained", from_pretrained)
    base = resolve("org/tiny-decoder", tmp_path / "scratch")
    assert (base.path, base.name, base.causal, base.source) == (
        "org/tiny-decoder", "tiny-decoder", True, {"kind": "hub", "id": "org/tiny-decoder"})
    with pytest.raises(TwofoldError, match=r"^org/missing: not a local directory and not loadable from the hub "
                                           r"\(org/missing is not a valid model identifier\)$"):
        resolve("org/missing", tmp_path / "scratch")
    with pytest.raises(TwofoldError, match=r"^org/untyped: config.json names no model_type"):
        resolve("org/untyped", tmp_path / "scratch")
    assert asked == ["org/tiny-decoder", "org/missing", "org/untyped"]


def test_a_runs_checkpoint_is_exported_into_the_scratch_folder_and_recorded(exports, tmp_path):
    run_dir = make_run(tmp_path / "run", exports["decoder"])
    base = resolve(f"{run_dir}@step2", tmp_path / "scratch")
    exported = tmp_path / "scratch" / "run-export"
    assert (base.path, base.name, base.causal) == (str(exported), "run", True)
    assert (exported / "tokenizer.json").is_file()
    assert base.source == {"kind": "run", "path": str(run_dir.resolve()), "checkpoint": "000000002-step2",
                           "sha256": {p.name: sha256_file(p) for p in sorted(exported.iterdir())
                                      if p.suffix in (".json", ".safetensors")}}


def test_a_pair_of_runs_is_exported_into_the_scratch_folder(exports, tmp_path):
    pair = tmp_path / "pair"
    for member in ("encoder", "decoder"):
        make_run(pair / member, exports[member])
    encoder, decoder = resolve_pair(pair, tmp_path / "scratch")
    assert (encoder.path, decoder.path) == (str(tmp_path / "scratch" / "encoder-export"),
                                            str(tmp_path / "scratch" / "decoder-export"))
    assert (encoder.causal, decoder.causal, encoder.source["kind"]) == (False, True, "run")


def test_a_run_whose_tokenizer_is_gone_is_refused(exports, tmp_path):
    run_dir = make_run(tmp_path / "run", exports["encoder"])
    manifest = tmp_path / "run-store" / "manifest.json"
    manifest.write_text(json.dumps({"tokenizer": {"path": str(tmp_path / "gone")}}))
    with pytest.raises(TwofoldError, match=rf"^{run_dir}: the run's tokenizer is gone; export the run with "
                                           r"--tokenizer first$"):
        resolve(str(run_dir), tmp_path / "scratch")


def test_a_pair_is_its_encoder_then_its_decoder_and_a_swapped_pair_is_refused(exports, tmp_path):
    encoder, decoder = resolve_pair(Path(exports["encoder"]).parent, tmp_path / "scratch")
    assert (encoder.name, encoder.causal, decoder.name, decoder.causal) == ("encoder", False, "decoder", True)
    with pytest.raises(TwofoldError, match=rf"^--pair {tmp_path}: not a pair run"):
        resolve_pair(tmp_path, tmp_path / "scratch")
    for encoder_from, decoder_from in (("decoder", "decoder"), ("encoder", "encoder"), ("decoder", "encoder")):
        swapped = tmp_path / f"{encoder_from}-{decoder_from}"
        shutil.copytree(exports[encoder_from], swapped / "encoder")
        shutil.copytree(exports[decoder_from], swapped / "decoder")
        with pytest.raises(TwofoldError, match=rf"^{swapped}: encoder/ must be an encoder and decoder/ a decoder$"):
            resolve_pair(swapped, tmp_path / "scratch")
