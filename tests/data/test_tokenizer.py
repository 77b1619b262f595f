import json

import pytest
from transformers import AutoTokenizer

from twofold.data.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_tokenizer
from twofold.errors import TwofoldError
from twofold.model import preset


def test_trained_tokenizer_has_modernbert_specials_and_bos_eos_are_cls_sep(tokenizer):
    special = tokenizer.special
    ids = [special.cls, special.sep, special.pad, special.mask, special.unk]
    assert [tokenizer.backend.id_to_token(i) for i in ids] == list(SPECIAL_TOKENS)
    assert (special.bos, special.eos) == (special.cls, special.sep)
    assert tokenizer.vocab_size == 512
    config = preset("tiny", vocab_size=64).for_tokenizer(tokenizer.vocab_size, special.to_dict())
    assert config.vocab_size == 512
    assert (config.cls_token_id, config.sep_token_id, config.pad_token_id, config.mask_token_id,
            config.bos_token_id, config.eos_token_id) == (special.cls, special.sep, special.pad,
                                                          special.mask, special.cls, special.sep)


def test_transformers_autotokenizer_loads_the_directory(tokenizer):
    directory = tokenizer.source.rsplit("/", 1)[0]
    hf = AutoTokenizer.from_pretrained(directory)
    text = "def loads(s): return json.decoder"
    encoded = hf(text)["input_ids"]
    assert encoded == [tokenizer.special.cls, *tokenizer.encode_batch([text])[0], tokenizer.special.sep]
    assert (hf.cls_token_id, hf.sep_token_id, hf.pad_token_id, hf.mask_token_id) == (
        tokenizer.special.cls, tokenizer.special.sep, tokenizer.special.pad, tokenizer.special.mask)
    assert (hf.bos_token_id, hf.eos_token_id) == (tokenizer.special.cls, tokenizer.special.sep)
    assert hf.decode(encoded, skip_special_tokens=True) == text


def test_load_accepts_the_file_and_the_directory_with_the_same_hash(tokenizer):
    by_file = load_tokenizer(tokenizer.source)
    by_dir = load_tokenizer(tokenizer.source.rsplit("/", 1)[0])
    assert by_file.hash == by_dir.hash == tokenizer.hash
    assert by_file.special == tokenizer.special


def test_special_names_come_from_tokenizer_config(tmp_path):
    trained = train_tokenizer(["a b c d e f g"] * 5, 300, tmp_path / "t")
    backend = trained.backend
    backend.add_special_tokens(["<s>"])
    backend.save(str(tmp_path / "t" / "tokenizer.json"))
    config = json.loads((tmp_path / "t" / "tokenizer_config.json").read_text())
    config["cls_token"] = {"content": "<s>"}
    (tmp_path / "t" / "tokenizer_config.json").write_text(json.dumps(config))
    assert load_tokenizer(tmp_path / "t").special.cls == backend.token_to_id("<s>")


def test_a_tokenizer_naming_only_bos_and_eos_frames_documents_with_them(tmp_path):
    # Gemma 2's tokenizer (mmBERT's) names <bos>/<eos>, no cls/sep, in its tokenizer_config.json.
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {name: i for i, name in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "hello", "world"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "gemma").mkdir()
    backend.save(str(tmp_path / "gemma" / "tokenizer.json"))
    config = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
              "mask_token": {"content": "<mask>", "lstrip": True}}
    (tmp_path / "gemma" / "tokenizer_config.json").write_text(json.dumps(config))
    special = load_tokenizer(tmp_path / "gemma").special
    assert (special.cls, special.sep, special.pad, special.mask, special.unk) == (2, 1, 0, 4, 3)


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(TwofoldError, match="tokenizer not found: .*nothing"):
        load_tokenizer(tmp_path / "nothing")


def test_tokenizer_without_the_special_tokens_is_refused(tmp_path):
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TwofoldError, match=r"no special token '\[CLS\]'"):
        load_tokenizer(tmp_path)


def test_corrupt_tokenizer_file_is_a_clear_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TwofoldError, match="not a valid tokenizer.json"):
        load_tokenizer(tmp_path)


def test_tokenizer_whose_vocab_does_not_fit_the_model_is_refused(tokenizer):
    tokenizer.check_fits(512)
    with pytest.raises(TwofoldError, match="vocab_size 500 is smaller than the tokenizer's 512"):
        tokenizer.check_fits(500)


def test_too_small_vocab_for_byte_level_bpe_is_refused(tmp_path):
    with pytest.raises(TwofoldError, match="vocab_size 100 is too small"):
        train_tokenizer(["x"], 100, tmp_path)
