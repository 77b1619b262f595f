"""What `prepare` writes down and shows: the manifest's counts per source and store, checked by hand
against the tokenizer (an empty document included), the tokenizer it names, and the progress bar
of bytes read with its running counts."""

import json
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest

from twofold.data import store as store_module
from twofold.data.sources import SourceSpec, estimated_size
from twofold.data.store import TokenStore, prepare_store
from twofold.data.tokenizer import Tokenizer
from twofold.errors import TwofoldError

TEXTS = ["def f(x):\n    return x + 1", "import os\nprint(os.getcwd())", "class A:\n    pass"]


class Bar:
    """tqdm as prepare uses it: what it was opened with, the units counted, the counts shown."""

    def __init__(self, **opened):
        self.opened, self.counted, self.postfix = opened, 0, []

    def update(self, n):
        self.counted += n

    def set_postfix(self, **shown):
        self.postfix.append(shown)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def bars(monkeypatch) -> list[Bar]:
    """The bars prepare opens, in order."""
    opened = []

    def tqdm(**settings) -> Bar:
        opened.append(Bar(**settings))
        return opened[-1]

    monkeypatch.setattr(store_module, "tqdm", tqdm)
    return opened


@pytest.fixture
def sources(tmp_path):
    (tmp_path / "code.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    (tmp_path / "none.jsonl").write_text(json.dumps({"text": ""}) + "\n")  # read, but no tokens to keep
    return [SourceSpec(str(tmp_path / "code.jsonl")), SourceSpec(str(tmp_path / "none.jsonl"))]


@pytest.mark.parametrize("progress", [True, False])
def test_the_manifest_counts_each_source_by_hand(tokenizer, sources, tmp_path, bars, progress):
    manifest = prepare_store(sources, tokenizer, tmp_path / "store", progress=progress)
    ids = tokenizer.encode_batch(TEXTS)
    tokens = sum(len(i) for i in ids)
    assert (manifest["num_documents"], manifest["num_tokens"], manifest["max_token_id"]) == (
        4, tokens, max(max(i) for i in ids))
    code, none = manifest["sources"]
    assert (code["name"], code["kind"], code["location"], code["documents"], code["tokens"]) == (
        "code", "jsonl", str((tmp_path / "code.jsonl").resolve()), 3, tokens)
    assert code["input_files"] and (none["name"], none["documents"], none["tokens"]) == ("none", 1, 0)
    assert manifest["tokenizer"]["path"] == str(Path(tokenizer.source).resolve())
    assert manifest["tokenizer"]["vocab_size"] == tokenizer.vocab_size
    text = (tmp_path / "store" / "manifest.json").read_text()
    assert json.loads(text) == manifest and text == json.dumps(manifest, indent=2) + "\n"
    assert TokenStore(tmp_path / "store").fingerprint == manifest["fingerprint"] != ""

    (bar,) = bars
    assert bar.opened == {"total": sum(estimated_size(s) for s in sources), "unit": "B", "unit_scale": True,
                          "disable": None if progress else True, "desc": "prepare store"}
    assert bar.counted == sum(map(len, TEXTS))
    assert bar.postfix[-1] == {"docs": 4, "tokens": tokens, "refresh": False}


def test_a_store_without_tokens_has_no_largest_id_and_a_tokenizer_in_memory_no_path(tokenizer, sources, tmp_path):
    in_memory = Tokenizer(tokenizer.backend, tokenizer.special)  # not loaded from a file
    manifest = prepare_store(sources[1:], in_memory, tmp_path / "empty", progress=False)
    assert (manifest["num_documents"], manifest["num_tokens"], manifest["max_token_id"]) == (1, 0, None)
    assert manifest["tokenizer"]["path"] == ""


def edited(store, tmp_path, change) -> Path:
    """A copy of the store whose manifest `change` edited (the fingerprint covers none of these fields)."""
    copy = tmp_path / "edited"
    shutil.copytree(store, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    change(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def set_tokenizer(key, value):
    return lambda manifest: manifest["tokenizer"].__setitem__(key, value)


@pytest.mark.parametrize("change, says", [
    (set_tokenizer("vocab_size", 0), "vocab_size 0 is not a count (edited?)"),
    (set_tokenizer("vocab_size", "512"), "vocab_size '512' is not a count (edited?)"),
    (set_tokenizer("vocab_size", 1), "token id 1 does not fit vocab_size 1 (edited?)"),  # [SEP] is 1
    (lambda m: m.__setitem__("max_token_id", m["tokenizer"]["vocab_size"]), "token id 512 does not fit vocab_size 512"),
    (lambda m: m.__setitem__("max_token_id", "7"), "token id '7' does not fit vocab_size 512"),
    (lambda m: m["tokenizer"]["special_ids"].__setitem__("mask", 512), "token id 512 does not fit vocab_size 512"),
    (lambda m: m["groups"][0].__setitem__("tokens", m["groups"][0]["tokens"] + 1), "the groups hold"),
])
def test_an_edited_manifest_is_refused_when_the_store_opens(group_store, tmp_path, change, says):
    path = edited(group_store, tmp_path, change)
    with pytest.raises(TwofoldError) as refused:
        TokenStore(path)
    assert str(refused.value).startswith(f"{path / 'manifest.json'}: ") and says in str(refused.value)


def test_the_edges_that_still_open(group_store, tmp_path):
    vocab = TokenStore(group_store).vocab_size
    TokenStore(edited(group_store, tmp_path, lambda m: m.__setitem__("max_token_id", vocab - 1)))
    shutil.rmtree(tmp_path / "edited")
    TokenStore(edited(group_store, tmp_path, lambda m: m.pop("max_token_id")))  # stores from before it was kept


def test_offsets_that_do_not_end_at_the_last_token_are_refused(group_store, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(group_store, copy)
    offsets = np.fromfile(copy / "offsets.bin", dtype=np.int64)
    offsets[-1] -= 1
    offsets.tofile(copy / "offsets.bin")
    with pytest.raises(TwofoldError, match=r"offsets.bin: does not span the \d+ tokens \(damaged\)"):
        TokenStore(copy)


def test_verify_reads_every_token_against_the_vocabulary(group_store, tmp_path):
    largest = int(TokenStore(group_store).tokens.max())

    def shrink(manifest):  # a vocabulary that ends at the largest id stored, the manifest's own ids made to fit
        manifest["tokenizer"]["vocab_size"] = largest
        manifest["max_token_id"] = largest - 1

    store = TokenStore(edited(group_store, tmp_path, shrink))
    with pytest.raises(TwofoldError, match=f"tokens.bin: token id {largest} is outside the vocabulary \\({largest}\\)"):
        store.verify()


def test_each_source_is_located_as_a_reader_would_find_it_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    assert store_module._location(SourceSpec("notes.txt")) == str(tmp_path / "notes.txt")  # absolute
    assert store_module._location(SourceSpec("org/dataset", kind="hf")) == "org/dataset"  # a hub name as given
    assert store_module._location(SourceSpec("stdlib", part="held-out")) == (
        f"stdlib of Python {platform.python_version()} (held-out)")


def test_each_group_lists_its_documents_and_counts_their_tokens(group_store):
    store = TokenStore(group_store)
    lengths = store.document_lengths()
    for index, group in enumerate(store.groups):
        mine = [doc for doc, g in enumerate(store.doc_groups) if g == index]
        assert store.documents_of(group).tolist() == mine
        assert store.group_tokens()[group] == int(sum(lengths[d] for d in mine)) > 0


def test_a_store_of_empty_documents_opens_and_verifies(tokenizer, tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": ""}) + "\n")
    prepare_store([SourceSpec(str(tmp_path / "a.jsonl"))], tokenizer, tmp_path / "store", progress=False)
    store = TokenStore(tmp_path / "store")
    assert (store.tokens.shape, store.tokens.dtype, store.num_documents) == ((0,), np.uint16, 1)
    assert store.document(0).tolist() == []
    store.verify()


def test_ids_past_two_bytes_take_four(group_store):
    assert store_module.token_dtype(1 << 16) == np.uint16 and store_module.token_dtype((1 << 16) + 1) == np.uint32
    assert TokenStore(group_store).sources == ["langs"]


def test_a_missing_source_is_refused_before_anything_is_tokenized(tokenizer, sources, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "_tokenized_chunks", lambda *a: pytest.fail("tokenized before checking"))
    with pytest.raises(TwofoldError, match="missing.jsonl"):
        prepare_store([sources[0], SourceSpec(str(tmp_path / "missing.jsonl"))], tokenizer, tmp_path / "s")
    assert store_module._total_size([sources[0], SourceSpec("org/data", kind="hf")]) is None  # a size unknown


def test_prepare_shows_its_bar_by_default(tokenizer, sources, tmp_path, bars):
    prepare_store(sources, tokenizer, tmp_path / "store")
    assert bars[0].opened["disable"] is None  # drawn where stderr is a terminal


def test_document_ids_stay_one_a_line_and_a_largest_id_of_zero_is_kept(tokenizer, tmp_path):
    records = [{"id": "a\nb", "input_ids": [0, 0, 0]}, {"id": "none", "input_ids": []}]
    (tmp_path / "ids.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    spec = SourceSpec(str(tmp_path / "ids.jsonl"), ids_field="input_ids", id_field="id")
    manifest = prepare_store([spec], tokenizer, tmp_path / "store", progress=False)
    store = TokenStore(tmp_path / "store")
    assert store.doc_ids == ["a b", "none"] and store.document(1).tolist() == []
    assert manifest["max_token_id"] == 0 == int(store.tokens.max())


def test_a_store_that_is_no_store_says_how_to_make_it(tmp_path):
    (tmp_path / "store").mkdir()
    with pytest.raises(TwofoldError) as plain:
        TokenStore(tmp_path / "store")
    assert str(plain.value) == f"{tmp_path / 'store'}: not a complete token store (no manifest.json); create it with " \
                               "`twofold data prepare`"
    (tmp_path / ".store.partial").mkdir()
    with pytest.raises(TwofoldError, match=r"no manifest.json\) \(an interrupted prepare leaves \.NAME\.partial; "
                                           r"rerun it\); create it"):
        TokenStore(tmp_path / "store")
    (tmp_path / "store" / "manifest.json").write_text("{torn")
    with pytest.raises(TwofoldError, match=r"manifest.json: not valid JSON .*; the store is damaged; prepare it "
                                           r"again with `twofold data prepare --overwrite`$"):
        TokenStore(tmp_path / "store")


@pytest.mark.parametrize("key, value", [("num_documents", True), ("num_tokens", -1), ("num_tokens", "9")])
def test_a_count_that_is_no_count_is_refused(group_store, tmp_path, key, value):
    path = edited(group_store, tmp_path, lambda manifest: manifest.__setitem__(key, value))
    with pytest.raises(TwofoldError, match=f"manifest.json: {key} is {value!r}, not a count"):
        TokenStore(path)
