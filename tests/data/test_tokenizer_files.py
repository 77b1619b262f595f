"""A tokenizer trained in the test (the shared one comes from a cache, so its training would go
unobserved): the BPE it learns, the files it writes as transformers reads them, each member's
framing, and the folders and sizes it refuses."""

import json
import re

import pytest
from transformers import AutoTokenizer

from twofold.data.tokenizer import for_member, load_tokenizer, train_tokenizer
from twofold.errors import TwofoldError

TEXTS = ["hello world, hello tokenizer"] * 5 + ["xy"] * 2 + ["def f(x): return x + 1"] * 3 + ["q r s"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tokenizer(TEXTS, 280, tmp_path_factory.mktemp("tok") / "tokenizer")


def folder(tokenizer):
    return tokenizer.source.rsplit("/", 1)[0]


def test_the_bpe_learns_byte_level_merges_of_pairs_seen_twice(trained, tmp_path):
    assert trained.vocab_size == 280
    # room for every merge: a pair seen twice is merged at the default min_frequency 2 …
    assert "xy" in train_tokenizer(TEXTS, 1000, tmp_path / "two").backend.get_vocab()
    assert "xy" not in train_tokenizer(TEXTS, 1000, tmp_path / "three", min_frequency=3).backend.get_vocab()
    # … no space is added before the first word (ByteLevel's add_prefix_space off)
    assert [trained.backend.id_to_token(i) for i in trained.encode_batch(["hello world"])[0]] == ["hello", "Ġworld"]
    # every byte is in the alphabet, seen in training or not: nothing is unknown and text comes back
    text = "naïve € \x07 café"
    assert trained.special.unk not in trained.encode_batch([text])[0]
    assert trained.decode(trained.encode_batch([text])[0]) == text


def test_the_folder_holds_what_transformers_reads(trained):
    names = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]",
             "unk_token": "[UNK]"}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **names, "bos_token": "[CLS]", "eos_token": "[SEP]",
              "model_max_length": 8192, "clean_up_tokenization_spaces": False,
              "model_input_names": ["input_ids", "attention_mask"]}
    with open(f"{folder(trained)}/tokenizer_config.json") as file:
        assert file.read() == json.dumps(config, indent=2) + "\n"
    with open(f"{folder(trained)}/special_tokens_map.json") as file:
        assert file.read() == json.dumps(names, indent=2) + "\n"
    with open(trained.source) as file:
        definition = json.load(file)
    assert definition["model"]["unk_token"] == "[UNK]"
    assert [t["content"] for t in definition["added_tokens"] if t["lstrip"]] == ["[MASK]"]

    hf = AutoTokenizer.from_pretrained(folder(trained))
    special = trained.special
    assert hf.model_max_length == 8192
    assert (hf.bos_token, hf.eos_token) == ("[CLS]", "[SEP]")
    encoded = hf("x = [MASK]")
    assert set(encoded) == {"input_ids", "attention_mask"}
    # [MASK] absorbs the space before it: the token before it is "=", not a space
    assert encoded["input_ids"][-3:] == [trained.encode_batch(["="])[0][0], special.mask, special.sep]
    assert hf.decode(hf("a , b")["input_ids"], skip_special_tokens=True) == "a , b"  # spaces left as they are


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_each_member_frames_singles_and_pairs_its_own_way(trained, causal):
    member = for_member(trained.backend, trained.special, causal)
    cls, sep = trained.special.cls, trained.special.sep
    a, b = trained.encode_batch(["hello", "world"])
    single, pair = member.encode("hello").ids, member.encode("hello", "world").ids
    if causal:  # BOS only: the text's last token ends the sequence
        assert single == [cls, *a] and pair == [cls, *a, sep, *b]
    else:
        assert single == [cls, *a, sep] and pair == [cls, *a, sep, *b, sep]
    assert member.encode("hello", "world").type_ids == [0] * (len(a) + 2) + [1] * (len(pair) - len(a) - 2)
    assert trained.backend.encode("hello").ids == [cls, *a, sep]  # the saved one is the encoder's


def test_decode_keeps_or_skips_the_special_tokens(trained):
    ids = [trained.special.cls, *trained.encode_batch(["hello world"])[0], trained.special.sep]
    assert trained.decode(ids) == "[CLS]hello world[SEP]"
    assert trained.decode(iter(ids), skip_special_tokens=True) == "hello world"
    assert trained.special.to_dict() == {"cls": 0, "sep": 1, "pad": 2, "mask": 3, "unk": 4, "bos": 0, "eos": 1}
    assert trained.special.all() == (0, 1, 2, 3, 4)


def test_the_smallest_byte_level_vocabulary_is_256_bytes_and_the_specials(tmp_path):
    assert train_tokenizer(TEXTS, 261, tmp_path / "smallest").vocab_size == 261
    with pytest.raises(TwofoldError, match=r"vocab_size 260 is too small for a byte-level BPE; use at least 261"):
        train_tokenizer(TEXTS, 260, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_a_folder_holding_a_tokenizer_or_other_files_is_refused(trained, tmp_path):
    with pytest.raises(TwofoldError, match=r": already holds a tokenizer; choose another --out"):
        train_tokenizer(TEXTS, 270, folder(trained))
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TwofoldError, match=r": exists and holds other files, not a tokenizer; choose a new or empty"):
        train_tokenizer(TEXTS, 270, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_model_too_small_for_the_vocabulary_is_named(trained):
    with pytest.raises(TwofoldError, match=r"^model config: vocab_size 64 is smaller than the tokenizer's 280 "):
        trained.check_fits(64)
    trained.check_fits(280)


def test_tokenizer_config_names_in_either_form_and_junk_falls_back(trained, tmp_path):
    (tmp_path / "tokenizer.json").write_text(trained.backend.to_str())
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"cls_token": {"content": "[SEP]"}, "sep_token": "[CLS]", "pad_token": 5}))
    special = load_tokenizer(tmp_path).special
    assert (special.cls, special.sep, special.pad) == (1, 0, 2)  # a number is no name: [PAD] stays
    config.write_text("{not json")
    advice = "; fix it or remove it (the default names [CLS] [SEP] … are then used)"
    with pytest.raises(TwofoldError, match=r"tokenizer_config.json: not valid JSON .*" + re.escape(advice) + "$"):
        load_tokenizer(tmp_path)
