import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from tests.data.conftest import paragraphs, write_jsonl

from twofold.data.sources import SourceSpec, read_documents
from twofold.data.store import TokenStore, prepare_store, token_dtype
from twofold.errors import TwofoldError


def test_round_trip_decode_of_store_equals_tokenized_source(tokenizer, group_corpus, group_store):
    store = TokenStore(group_store)
    documents = list(read_documents(SourceSpec(str(group_corpus), group_field="lang", id_field="id")))
    assert store.num_documents == len(documents)
    expected = tokenizer.encode_batch([d.text for d in documents])
    for index, document in enumerate(documents):
        assert store.document(index).tolist() == expected[index]
        assert tokenizer.decode(store.document(index)) == document.text
        assert store.doc_ids[index] == document.doc_id
        assert store.groups[store.doc_groups[index]] == document.group
    assert store.tokens.dtype == np.uint16


def test_manifest_counts_checksums_and_tokenizer(tokenizer, group_corpus, group_store):
    store = TokenStore(group_store)
    manifest = store.manifest
    assert {g["name"]: g["documents"] for g in manifest["groups"]} == {"big": 240, "mid": 60, "small": 15}
    assert sum(g["tokens"] for g in manifest["groups"]) == manifest["num_tokens"] == store.num_tokens
    assert manifest["sources"][0]["documents"] == 315
    assert manifest["sources"][0]["input_files"] == {str(group_corpus): _sha256(group_corpus)}
    assert manifest["tokenizer"]["hash"] == tokenizer.hash
    assert manifest["tokenizer"]["special_ids"]["cls"] == tokenizer.special.cls
    assert manifest["files"]["tokens.bin"] == _sha256(group_store / "tokens.bin")
    store.verify()


def test_rerun_gives_the_same_fingerprint_and_another_corpus_another(tmp_path, tokenizer, group_corpus, group_store):
    spec = SourceSpec(str(group_corpus), group_field="lang", id_field="id")
    again = prepare_store([spec], tokenizer, tmp_path / "again", progress=False, chunk_chars=5000)
    assert again["fingerprint"] == TokenStore(group_store).fingerprint
    other = prepare_store([SourceSpec(str(group_corpus), id_field="id")], tokenizer, tmp_path / "other", progress=False)
    assert other["fingerprint"] != again["fingerprint"]  # same tokens, other groups


def test_non_utf8_replacements_and_skipped_lines_are_reported(tmp_path, tokenizer):
    file = tmp_path / "dirty.jsonl"
    file.write_bytes(b'{"text": "caf\xe9"}\nnot json\n{"text": "fine"}\n')
    manifest = prepare_store([SourceSpec(str(file), skip_bad_lines=True)], tokenizer, tmp_path / "s", progress=False)
    assert manifest["sources"][0]["replaced_characters"] == 1
    assert manifest["sources"][0]["bad_lines_skipped"] == 1
    assert manifest["num_documents"] == 2


def test_existing_output_is_refused_unless_overwrite(tmp_path, tokenizer, group_corpus):
    spec = SourceSpec(str(group_corpus))
    prepare_store([spec], tokenizer, tmp_path / "s", progress=False)
    with pytest.raises(TwofoldError, match="already holds a token store; pass --overwrite"):
        prepare_store([spec], tokenizer, tmp_path / "s", progress=False)
    manifest = prepare_store([spec], tokenizer, tmp_path / "s", progress=False, overwrite=True)
    assert TokenStore(tmp_path / "s").fingerprint == manifest["fingerprint"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_failed_prepare_leaves_nothing_that_looks_complete(tmp_path, tokenizer):
    good = write_jsonl(tmp_path / "a.jsonl", [{"text": "fine"}])
    bad = tmp_path / "b.jsonl"
    bad.write_text("{oops\n")
    with pytest.raises(TwofoldError, match="b.jsonl:1"):
        prepare_store([SourceSpec(str(good)), SourceSpec(str(bad))], tokenizer, tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()
    with pytest.raises(TwofoldError, match="not a complete token store"):
        TokenStore(tmp_path / "s")


def test_damaged_store_is_detected(tmp_path, tokenizer, group_corpus):
    prepare_store([SourceSpec(str(group_corpus))], tokenizer, tmp_path / "s", progress=False)
    with open(tmp_path / "s" / "tokens.bin", "r+b") as handle:
        handle.write(b"\x00\x00")
    with pytest.raises(TwofoldError, match="checksum differs"):
        TokenStore(tmp_path / "s").verify()
    (tmp_path / "s" / "manifest.json").unlink()
    with pytest.raises(TwofoldError, match="no manifest.json"):
        TokenStore(tmp_path / "s")


def test_duplicate_source_names_and_no_sources_are_refused(tmp_path, tokenizer, group_corpus):
    with pytest.raises(TwofoldError, match="source names repeat"):
        prepare_store([SourceSpec(str(group_corpus))] * 2, tokenizer, tmp_path / "s", progress=False)
    with pytest.raises(TwofoldError, match="no sources"):
        prepare_store([], tokenizer, tmp_path / "s", progress=False)


def test_token_dtype_widens_for_large_vocabularies():
    assert token_dtype(50368) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(256000) == np.uint32


def test_store_survives_pickling_for_dataloader_workers(group_store):
    import pickle

    store = TokenStore(group_store)
    copy = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 1000  # by path, not by content
    assert np.array_equal(copy.document(3), store.document(3))


def test_killed_prepare_leaves_no_store_and_a_rerun_gives_the_uninterrupted_fingerprint(tmp_path, tokenizer):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    blocks = paragraphs()
    for index in range(100):  # enough text for many small chunks (about 1 s of work)
        (corpus / f"{index:03d}.txt").write_text("\n\n".join(blocks[index::100] * 6))
    reference = prepare_store([SourceSpec(str(corpus))], tokenizer, tmp_path / "reference", progress=False)
    out = tmp_path / "store"
    command = [sys.executable, "-m", "twofold", "data", "prepare", "--source", str(corpus),
               "--tokenizer", tokenizer.source, "--out", str(out), "--chunk-chars", "2000"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial_tokens = tmp_path / ".store.partial" / "tokens.bin"
    deadline = time.time() + 60
    while not (partial_tokens.exists() and partial_tokens.stat().st_size > 0):
        assert process.poll() is None and time.time() < deadline, "prepare finished before it could be killed"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    with pytest.raises(TwofoldError, match="interrupted prepare"):
        TokenStore(out)
    rerun = subprocess.run(command[:-2], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert TokenStore(out).fingerprint == reference["fingerprint"]
    assert not (tmp_path / ".store.partial").exists()
    assert json.loads((out / "manifest.json").read_text())["num_tokens"] == reference["num_tokens"]


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prepare_memory_does_not_grow_with_the_corpus(tmp_path, tokenizer):
    import tracemalloc

    blocks = paragraphs()

    def peak(copies: int) -> int:
        corpus = write_jsonl(tmp_path / f"c{copies}.jsonl", [{"text": b} for b in blocks * copies])
        tracemalloc.start()
        prepare_store([SourceSpec(str(corpus))], tokenizer, tmp_path / f"s{copies}",
                      progress=False, chunk_chars=20_000)
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return high

    small, large = peak(1), peak(5)
    assert large < 1.3 * small + 100_000, (small, large)  # 5x the corpus, about the same peak
