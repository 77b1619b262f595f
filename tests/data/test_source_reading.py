"""What each kind of source yields, read from small files the tests write: the documents' texts,
ids, names, groups and token ids, the files' checksums and counts in the stats, the size a
source announces, and the one-line errors for bad input. MDS shards and gettext catalogues are
written here byte by byte (their readers are tested against the real writers elsewhere); the
Hugging Face sources are read by the real `datasets` from local copies."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from tests.data.conftest import read, write_jsonl

from twofold.data.catalogues import is_held_out as message_held_out
from twofold.data.sources import (
    SourceSpec,
    estimated_size,
    input_files,
    parse_source_spec,
    read_documents,
)
from twofold.data.stdlib import is_held_out as module_held_out
from twofold.data.stdlib import stdlib_documents, stdlib_modules
from twofold.errors import TwofoldError


def rows(documents) -> list[tuple]:
    return [(d.text, d.doc_id, d.source, d.group, None if d.ids is None else d.ids.tolist()) for d in documents]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- specs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, kind", [("a.jsonl", "jsonl"), ("a.JSON", "jsonl"), ("d/a.Parquet", "parquet"),
                                        ("a.npy", "numpy"), ("a.txt", "text"), ("notes", "text"),
                                        ("stdlib", "stdlib")])
def test_kind_is_inferred_from_the_path(path, kind):
    assert SourceSpec(path).kind == kind


def test_name_and_group_default_to_the_file_stem():
    spec = SourceSpec("/data/web.fr.jsonl")
    assert (spec.name, spec.group) == ("web.fr", "web.fr")
    assert (SourceSpec("stdlib").name, SourceSpec("/x/lib.txt", kind="stdlib").name) == ("stdlib", "stdlib")
    assert SourceSpec("/").name == "/"  # no stem: the path itself
    named = SourceSpec("/data/web.jsonl", name="web")
    assert (named.name, named.group) == ("web", "web")
    assert SourceSpec("/data/web.jsonl", name="web", group="fr").group == "fr"


def test_a_bad_split_is_a_clear_error():
    with pytest.raises(TwofoldError, match="split='paragraph'; use 'file' or 'blank-line'"):
        SourceSpec("a.txt", split="paragraph")
    assert SourceSpec("a.txt", split="blank-line").split == "blank-line"


def test_spec_items_are_stripped_and_booleans_read_in_any_case():
    spec = parse_source_spec(" path = a.jsonl , group = fr ,streaming=YES,skip_bad_lines= 1 ")
    assert (spec.path, spec.group, spec.streaming, spec.skip_bad_lines) == ("a.jsonl", "fr", True, True)
    spec = parse_source_spec("path=a.jsonl,streaming=True,skip_bad_lines=no")
    assert (spec.streaming, spec.skip_bad_lines) == (True, False)
    assert parse_source_spec("path=a.jsonl,skip_bad_lines=0").skip_bad_lines is False
    assert parse_source_spec("data/a.jsonl") == SourceSpec("data/a.jsonl")
    assert parse_source_spec("path=data/n=2.jsonl,group=fr").path == "data/n=2.jsonl"  # the first "=" splits
    with pytest.raises(TwofoldError, match="bad item 'group'"):
        parse_source_spec("path=a.jsonl,group")


# ---- files and text ----------------------------------------------------------------------------

def test_a_directory_lists_its_files_sorted_without_hidden_ones_and_by_suffix(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.jsonl", "a.JSONL", "sub/c.json", "notes.txt", ".hidden.jsonl", "sub/d.parquet"):
        (tmp_path / name).write_text('{"text": "x"}\n')
    listed = lambda kind: [name for _, name in input_files(SourceSpec(str(tmp_path), kind=kind))]
    assert listed("jsonl") == ["a.JSONL", "b.jsonl", "sub/c.json"]
    assert listed("parquet") == ["sub/d.parquet"]
    assert listed("text") == ["a.JSONL", "b.jsonl", "notes.txt", "sub/c.json", "sub/d.parquet"]
    assert input_files(SourceSpec(str(tmp_path / "b.jsonl"))) == [(tmp_path / "b.jsonl", "b.jsonl")]
    with pytest.raises(TwofoldError, match=f"source {tmp_path}: directory holds no numpy files"):
        input_files(SourceSpec(str(tmp_path), kind="numpy"))


def test_text_files_are_checksummed_and_their_replacements_summed(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 one")
    (tmp_path / "b.txt").write_bytes(b"\xff two \xfe")
    (tmp_path / "c.txt").write_bytes(b"  \n\t\n")  # blank: no document
    documents, stats = read(SourceSpec(str(tmp_path), name="t", group="g"))
    assert rows(documents) == [("caf\ufffd one", "a.txt", "t", "g", None),
                               ("\ufffd two \ufffd", "b.txt", "t", "g", None)]
    assert stats.replaced_characters == 3
    assert stats.files == {str(tmp_path / n): sha256(tmp_path / n) for n in ("a.txt", "b.txt", "c.txt")}


def test_blank_line_blocks_keep_their_indentation_and_split_on_whitespace_lines(tmp_path):
    file = tmp_path / "book.txt"
    file.write_text("\n\n  indented\nline\n \t\nnext  \n\nX marks\nthe spotX\n\n\n")
    documents, _ = read(SourceSpec(str(file), split="blank-line", group="en"))
    assert rows(documents) == [("  indented\nline", "book.txt#0", "book", "en", None),
                               ("next  ", "book.txt#1", "book", "en", None),
                               ("X marks\nthe spotX", "book.txt#2", "book", "en", None)]


# ---- JSONL -------------------------------------------------------------------------------------

def test_jsonl_ids_count_lines_blank_ones_included_and_the_checksum_covers_them(tmp_path):
    file = tmp_path / "d.jsonl"
    file.write_bytes(b'{"text": "a"}\n\n   \n{"text": "b", "uid": "u2"}\n{"text": "c", "uid": 3}\n')
    documents, stats = read(SourceSpec(str(file), id_field="uid"))
    assert [(d.text, d.doc_id) for d in documents] == [("a", "d.jsonl:1"), ("b", "u2"), ("c", "3")]
    assert stats.files == {str(file): sha256(file)}
    assert (stats.bad_lines_skipped, stats.replaced_characters) == (0, 0)


def test_jsonl_bytes_and_surrogates_replaced_in_text_id_and_group_are_each_counted(tmp_path):
    file = tmp_path / "d.jsonl"
    file.write_bytes(b'{"text": "caf\xe9 \\ud800", "uid": "x\\udc00", "lang": "f\\ud801r"}\n'
                     b'{"text": "plain", "uid": "y", "lang": "en"}\n')
    documents, stats = read(SourceSpec(str(file), id_field="uid", group_field="lang"))
    assert [(d.text, d.doc_id, d.group) for d in documents] == [
        ("caf\ufffd \ufffd", "x\ufffd", "f\ufffdr"), ("plain", "y", "en")]
    assert stats.replaced_characters == 4


def test_jsonl_token_ids_from_ids_field(tmp_path):
    file = write_jsonl(tmp_path / "ids.jsonl", [{"input_ids": [5, 6, 7], "lang": "fr"}, {"input_ids": [9]}])
    documents, _ = read(SourceSpec(str(file), ids_field="input_ids", name="tok"))
    assert rows(documents) == [("", "ids.jsonl:1", "tok", "tok", [5, 6, 7]), ("", "ids.jsonl:2", "tok", "tok", [9])]
    assert documents[0].ids.dtype == np.int64


@pytest.mark.parametrize("value", [[1, True], [1, 2.0], "1 2", {"a": 1}, 7])
def test_jsonl_ids_that_are_not_a_list_of_integers_stop_or_are_skipped(tmp_path, value):
    file = write_jsonl(tmp_path / "ids.jsonl", [{"input_ids": [1, 2]}, {"input_ids": value}, {"input_ids": [3]}])
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(file), ids_field="input_ids"))
    assert str(error.value) == (f"{file}:2: not a JSON object with a list of token ids 'input_ids'; fix the line, "
                                "set ids_field=…, or skip_bad_lines=true")
    documents, stats = read(SourceSpec(str(file), ids_field="input_ids", skip_bad_lines=True))
    assert [d.ids.tolist() for d in documents] == [[1, 2], [3]]
    assert stats.bad_lines_skipped == 1


def test_token_ids_beyond_64_bits_are_a_bad_line_not_a_crash(tmp_path):
    file = write_jsonl(tmp_path / "ids.jsonl", [{"input_ids": [1, 2]}, {"input_ids": [3, 2 ** 64]}])
    with pytest.raises(TwofoldError, match=f"^{file}:2: not a JSON object with a list of token ids 'input_ids'"):
        read(SourceSpec(str(file), ids_field="input_ids"))
    documents, stats = read(SourceSpec(str(file), ids_field="input_ids", skip_bad_lines=True))
    assert ([d.ids.tolist() for d in documents], stats.bad_lines_skipped) == ([[1, 2]], 1)
    import pyarrow as pa

    column = pa.array([[1], [2 ** 63]], pa.list_(pa.uint64()))  # fits uint64, not int64
    parquet = write_parquet(tmp_path / "ids.parquet", {"input_ids": column})
    with pytest.raises(TwofoldError, match=f"^{parquet}: row 2: column 'input_ids' is not a list of token ids"):
        read(SourceSpec(str(parquet), ids_field="input_ids"))


@pytest.mark.parametrize("line", ['{"text": 5}', '{"body": "x"}', '["text"]', '"text"', "{broken"])
def test_jsonl_text_that_is_not_a_string_field_is_a_one_line_error(tmp_path, line):
    file = tmp_path / "t.jsonl"
    file.write_text(f'{{"text": "ok"}}\n{line}\n')
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(file)))
    assert str(error.value) == (f"{file}:2: not a JSON object with a string field 'text'; fix the line, set "
                                "text_field=…, or skip_bad_lines=true")


def test_jsonl_group_field_missing_or_empty_names_the_line_and_a_zero_is_a_group(tmp_path):
    file = write_jsonl(tmp_path / "g.jsonl", [{"text": "a", "lang": 0}, {"text": "b", "lang": "de"}])
    documents, _ = read(SourceSpec(str(file), group_field="lang"))
    assert [d.group for d in documents] == ["0", "de"]
    for bad in ({"text": "c"}, {"text": "c", "lang": ""}, {"text": "c", "lang": None}):
        write_jsonl(file, [{"text": "a", "lang": "fr"}, bad])
        with pytest.raises(TwofoldError) as error:
            read(SourceSpec(str(file), group_field="lang"))
        assert str(error.value) == f"{file}:2: no group field 'lang'; add it or drop group_field"


def test_a_source_whose_lines_are_all_skipped_is_empty(tmp_path):
    file = tmp_path / "bad.jsonl"
    file.write_text("nope\n\n")
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(file), skip_bad_lines=True))
    assert str(error.value) == f"source {file}: no documents found (empty source); check the path and kind"


# ---- Parquet -----------------------------------------------------------------------------------

def write_parquet(path: Path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_rows_are_numbered_across_batches_with_ids_and_groups_from_columns(tmp_path):
    texts = [f"row {i}" if i % 500 else None for i in range(1, 1201)]  # past one batch of 1024 rows
    file = write_parquet(tmp_path / "p.parquet", {"text": texts, "lang": [f"l{i % 3}" for i in range(1, 1201)],
                                                  "uid": [f"u{i}" for i in range(1, 1201)]})
    documents, stats = read(SourceSpec(str(file), group_field="lang", name="pq"))
    assert len(documents) == 1200 - 2
    assert [(d.text, d.doc_id, d.group) for d in documents[-2:]] == [("row 1199", "p.parquet:1199", "l2"),
                                                                     ("row 1200", "p.parquet:1200", "l0")]
    assert {d.source for d in documents} == {"pq"}
    with_ids, _ = read(SourceSpec(str(file), id_field="uid"))
    assert [d.doc_id for d in with_ids[:2]] == ["u1", "u2"]
    assert stats.files == {str(file): sha256(file)}


def test_parquet_row_without_a_group_names_the_file_and_row(tmp_path):
    file = write_parquet(tmp_path / "p.parquet", {"text": ["a", "b", "c"], "lang": ["fr", "de", None]})
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(file), group_field="lang"))
    assert str(error.value) == f"{file}:3: no group field 'lang'; add it or drop group_field"


def test_parquet_token_ids_from_ids_field_skip_empty_rows(tmp_path):
    file = write_parquet(tmp_path / "p.parquet", {"input_ids": [[4, 5], [], [6]], "text": ["a", "b", "c"]})
    documents, _ = read(SourceSpec(str(file), ids_field="input_ids", group="g"))
    assert rows(documents) == [("", "p.parquet:1", "p", "g", [4, 5]), ("", "p.parquet:3", "p", "g", [6])]


def test_parquet_bad_ids_column_missing_column_and_unreadable_file_are_one_line(tmp_path):
    file = write_parquet(tmp_path / "p.parquet", {"input_ids": ["1 2", "3"], "text": ["a", "b"]})
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(file), ids_field="input_ids"))
    assert str(error.value) == (f"{file}: row 1: column 'input_ids' is not a list of token ids; give the column "
                                "of integer lists (ids_field=…)")
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(file), ids_field="tokens"))
    assert str(error.value) == f"{file}: no column 'tokens' (columns: input_ids, text); set ids_field=…"
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(file), text_field="body"))
    assert str(error.value) == f"{file}: no column 'body' (columns: input_ids, text); set text_field=…"
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(TwofoldError, match=f"^{broken}: not a readable Parquet file"):
        read(SourceSpec(str(broken)))


# ---- NumPy -------------------------------------------------------------------------------------

def test_numpy_one_document_per_1d_file_and_per_row_of_a_2d_one(tmp_path):
    np.save(tmp_path / "a.npy", np.array([3, 4, 5], dtype=np.uint16))
    np.save(tmp_path / "b.npy", np.array([[1, 2], [7, 8]], dtype=np.int32))
    np.save(tmp_path / "c.npy", np.array([], dtype=np.int64))  # empty: no document
    (tmp_path / "readme.txt").write_text("not read")
    documents, stats = read(SourceSpec(str(tmp_path), kind="numpy", name="np", group="g"))
    assert rows(documents) == [("", "a.npy", "np", "g", [3, 4, 5]), ("", "b.npy:0", "np", "g", [1, 2]),
                               ("", "b.npy:1", "np", "g", [7, 8])]
    assert all(d.ids.dtype == np.int64 for d in documents)
    assert stats.files == {str(tmp_path / n): sha256(tmp_path / n) for n in ("a.npy", "b.npy", "c.npy")}


def test_numpy_rows_that_are_empty_give_no_document(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((2, 0), dtype=np.int64))
    with pytest.raises(TwofoldError, match="empty source"):
        read(SourceSpec(str(tmp_path / "e.npy")))


@pytest.mark.parametrize("array, says", [(np.zeros((2, 2, 2), dtype=np.int64), "holds a 3-D int64 array"),
                                         (np.zeros(3, dtype=np.float32), "holds a 1-D float32 array"),
                                         (np.array(5), "holds a 0-D int64 array")])
def test_numpy_arrays_that_are_not_1d_or_2d_integers_are_refused(tmp_path, array, says):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(tmp_path / "x.npy")))
    assert str(error.value) == (f"{tmp_path / 'x.npy'}: {says}; give 1-D (one document) or 2-D (a document per "
                                "row) integer token ids")


def test_numpy_pickled_or_torn_files_are_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "p.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(TwofoldError, match=f"^{tmp_path / 'p.npy'}: not a NumPy .npy array of token ids"):
        read(SourceSpec(str(tmp_path / "p.npy")))
    (tmp_path / "t.npy").write_bytes(b"\x93NUMPY torn")
    with pytest.raises(TwofoldError, match="not a NumPy .npy array of token ids"):
        read(SourceSpec(str(tmp_path / "t.npy")))


# ---- MDS ---------------------------------------------------------------------------------------

def write_mds(folder: Path, samples: list[dict], encodings: dict[str, str]) -> Path:
    """One uncompressed MDS shard in mosaicml-streaming's layout (columns sorted; `str` and
    `ndarray:<dtype>` columns, both of variable size)."""
    folder.mkdir(parents=True)
    names = sorted(encodings)
    payloads = []
    for sample in samples:
        parts = []
        for name in names:
            value = sample[name]
            if encodings[name] == "str":
                parts.append(value.encode())
            else:  # ndarray with a fixed dtype: [ndim << 2 | uint32 shape][shape][values]
                array = np.asarray(value, dtype=encodings[name].split(":")[1])
                parts.append(bytes([array.ndim << 2 | 2]) + np.array(array.shape, np.uint32).tobytes()
                             + array.tobytes())
        payloads.append(b"".join(struct.pack("<I", len(p)) for p in parts) + b"".join(parts))
    start = 4 + 4 * (len(samples) + 1)
    offsets = np.cumsum([start] + [len(p) for p in payloads]).astype(np.uint32)
    (folder / "shard.00000.mds").write_bytes(struct.pack("<I", len(samples)) + offsets.tobytes() + b"".join(payloads))
    shard = {"format": "mds", "version": 2, "column_names": names, "column_encodings": [encodings[n] for n in names],
             "column_sizes": [None] * len(names), "samples": len(samples), "compression": None,
             "raw_data": {"basename": "shard.00000.mds"}, "zip_data": None}
    (folder / "index.json").write_text(json.dumps({"version": 2, "shards": [shard]}))
    return folder


MDS_SAMPLES = [{"ids": [[3, 4], [5, 6]], "text": "premier", "lang": "fr", "uid": "doc-a", "score": [0.5]},
               {"ids": [9], "text": "second", "lang": "en", "uid": "doc-b", "score": [1.5]}]
MDS_COLUMNS = {"ids": "ndarray:int32", "text": "str", "lang": "str", "uid": "str", "score": "ndarray:float32"}


def test_mds_samples_give_text_or_flattened_token_ids_with_ids_and_groups(tmp_path):
    folder = write_mds(tmp_path / "mds", MDS_SAMPLES, MDS_COLUMNS)
    documents, stats = read(SourceSpec(str(folder), kind="mds", name="m", group="g"))
    assert rows(documents) == [("premier", "shard.00000.mds:0", "m", "g", None),
                               ("second", "shard.00000.mds:1", "m", "g", None)]
    assert stats.files == {str(folder / n): sha256(folder / n) for n in ("index.json", "shard.00000.mds")}
    documents, _ = read(SourceSpec(str(folder), kind="mds", name="m", ids_field="ids", id_field="uid",
                                   group_field="lang"))
    assert rows(documents) == [("", "doc-a", "m", "fr", [3, 4, 5, 6]), ("", "doc-b", "m", "en", [9])]
    assert documents[0].ids.dtype == np.int64


def test_mds_columns_missing_or_not_integer_ids_are_one_line(tmp_path):
    folder = write_mds(tmp_path / "mds", MDS_SAMPLES, MDS_COLUMNS)
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(folder), kind="mds", ids_field="input_ids"))
    assert str(error.value) == (f"MDS {folder}: sample shard.00000.mds:0 has no column 'input_ids' (columns: ids, "
                                "lang, score, text, uid); set ids_field=…")
    with pytest.raises(TwofoldError, match="has no column 'body' .*; set text_field=…"):
        read(SourceSpec(str(folder), kind="mds", text_field="body"))
    for column in ("score", "text"):
        with pytest.raises(TwofoldError) as error:
            read(SourceSpec(str(folder), kind="mds", ids_field=column))
        assert str(error.value) == (f"MDS {folder}: column {column!r} of sample shard.00000.mds:0 is not integer "
                                    "token ids")
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(folder), kind="mds", group_field="uid_lang"))
    assert str(error.value) == f"{folder}:1: no group field 'uid_lang'; add it or drop group_field"


def test_mds_group_error_counts_samples_from_one(tmp_path):
    samples = [dict(MDS_SAMPLES[0]), dict(MDS_SAMPLES[1], lang="")]
    folder = write_mds(tmp_path / "mds", samples, MDS_COLUMNS)
    with pytest.raises(TwofoldError) as error:
        list(read_documents(SourceSpec(str(folder), kind="mds", group_field="lang")))
    assert str(error.value) == f"{folder}:2: no group field 'lang'; add it or drop group_field"


# ---- Hugging Face datasets (local copies) -------------------------------------------------------

def hub_copy(folder: Path, configs: dict[str, dict[str, list[dict]]]) -> Path:
    """A dataset repository's layout: a JSONL file per config and split, the configs in the README."""
    readme = ""
    for config, splits in configs.items():
        readme += f"- config_name: {config}\n  data_files:\n"
        for split, records in splits.items():
            (folder / config).mkdir(parents=True, exist_ok=True)
            write_jsonl(folder / config / f"{split}.jsonl", records)
            readme += f"  - split: {split}\n    path: {config}/{split}.jsonl\n"
    (folder / "README.md").write_text(f"---\nconfigs:\n{readme}---\n")
    return folder


def test_hf_config_and_split_pick_the_records_and_name_the_ids(tmp_path):
    copy = hub_copy(tmp_path / "set", {
        "first": {"train": [{"text": "one", "n": 1}], "validation": [{"text": "x", "n": 2}]},
        "second": {"train": [{"text": "a", "n": 3}],
                   "validation": [{"text": "", "n": 4}, {"text": "b", "n": 5}, {"text": "c", "n": 6}]},
    })
    documents, _ = read(SourceSpec(str(copy), kind="hf", hf_config="second", hf_split="validation", group="g"))
    assert rows(documents) == [("b", "validation:1", "set", "g", None), ("c", "validation:2", "set", "g", None)]
    documents, _ = read(SourceSpec(str(copy), kind="hf", hf_config="first", id_field="n"))
    assert [(d.text, d.doc_id) for d in documents] == [("one", "1")]


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_streaming_reads_the_records_without_writing_an_arrow_copy(tmp_path, monkeypatch, streaming):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    copy = hub_copy(tmp_path / "set", {"default": {"train": [{"text": "one"}, {"text": "two"}]}})
    documents, _ = read(SourceSpec(str(copy), kind="hf", streaming=streaming))
    assert [(d.text, d.doc_id) for d in documents] == [("one", "train:0"), ("two", "train:1")]
    assert bool(list((tmp_path / "cache").rglob("*.arrow"))) is not streaming


def test_hf_records_without_the_field_or_without_text_are_one_line(tmp_path):
    copy = hub_copy(tmp_path / "set", {"default": {"train": [{"text": "", "body": "x"}, {"text": "", "body": "y"}]}})
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(copy), kind="hf", text_field="body", group_field="lang"))
    assert str(error.value) == f"{copy}:0: no group field 'lang'; add it or drop group_field"
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(copy), kind="hf"))
    assert str(error.value) == f"source {copy}: no documents found (empty source)"
    with pytest.raises(TwofoldError) as error:
        read(SourceSpec(str(copy), kind="hf", text_field="content"))
    assert str(error.value) == f"source {copy}: record 0 has no field 'content'; set text_field=…"


# ---- stdlib, gettext and sizes -----------------------------------------------------------------

def test_stdlib_source_keeps_the_documents_under_its_own_name():
    documents, _ = read(SourceSpec("stdlib", name="code", packages="json++email"))
    expected = list(stdlib_documents("train", ["json", "email"]))
    assert rows(documents) == [(d.text, d.doc_id, "code", d.group, None) for d in expected]
    assert {d.group for d in documents} == {"code", "prose"}
    held_out, _ = read(SourceSpec("stdlib", packages="json+email", part="held-out"))
    assert {d.doc_id for d in held_out} == {"code:email._policybase", "docstrings:email._policybase",
                                            "code:email.feedparser", "docstrings:email.feedparser"}
    assert not {d.doc_id for d in held_out} & {d.doc_id for d in documents}


def write_mo(path: Path, messages: dict[str, str]) -> Path:
    """A compiled gettext catalogue (GNU .mo, little-endian), header entry first."""
    entries = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **messages}.items())
    ids, strings = [k.encode() for k, _ in entries], [v.encode() for _, v in entries]
    table_at = 28
    data_at = table_at + 16 * len(entries)
    id_table, string_table, blob = b"", b"", b""
    for text in ids:
        id_table += struct.pack("<2I", len(text), data_at + len(blob))
        blob += text + b"\0"
    for text in strings:
        string_table += struct.pack("<2I", len(text), data_at + len(blob))
        blob += text + b"\0"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<7I", 0x950412DE, 0, len(entries), table_at, table_at + 8 * len(entries), 0, 0)
                     + id_table + string_table + blob)
    return path


def test_gettext_source_gives_a_document_per_locale_in_the_part_asked(tmp_path):
    messages = {f"message {i}": f"phrase {i}" for i in range(40)}
    write_mo(tmp_path / "pkg" / "locale" / "fr" / "LC_MESSAGES" / "django.mo", messages)
    (tmp_path / "pkg" / "locale" / "fr" / "LC_MESSAGES" / "django.po").write_text("not compiled")
    held = {m for m in messages if message_held_out("fr", m)}
    assert 0 < len(held) < len(messages)
    for part, expected in (("train", set(messages) - held), ("held-out", held)):
        documents, _ = read(SourceSpec(str(tmp_path), kind="gettext", name="po", part=part))
        french = [d for d in documents if d.group == "fr"]
        assert [(d.doc_id, d.source) for d in french] == [(f"pkg/locale/fr/LC_MESSAGES/django.mo#{part}", "po")]
        assert set(french[0].text.split("\n")) == {messages[m] for m in expected}
    assert estimated_size(SourceSpec(str(tmp_path), kind="gettext")) == (
        tmp_path / "pkg" / "locale" / "fr" / "LC_MESSAGES" / "django.mo").stat().st_size


def test_estimated_size_of_files_is_their_bytes_and_of_hf_unknown(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "abc"}\n')
    (tmp_path / "b.json").write_text('{"text": "de"}\n\n')
    (tmp_path / "c.txt").write_text("0123456789")
    assert estimated_size(SourceSpec(str(tmp_path), kind="jsonl")) == 16 + 16
    assert estimated_size(SourceSpec(str(tmp_path), kind="text")) == 16 + 16 + 10
    assert estimated_size(SourceSpec(str(tmp_path / "c.txt"))) == 10
    assert estimated_size(SourceSpec("json", kind="hf")) is None


def test_estimated_size_of_stdlib_counts_the_part_asked_and_the_topics_only_for_all_of_it():
    def code(packages, held_out):
        return sum(f.stat().st_size for m, f in stdlib_modules(packages) if module_held_out(m) == held_out)

    json_train = estimated_size(SourceSpec("stdlib", packages="json+"))
    assert json_train == int(code(["json"], False) * 1.18)
    read_bytes = sum(len(d.text.encode()) for d in stdlib_documents("train", ["json"]))
    assert 0.8 * read_bytes < json_train < 1.25 * read_bytes  # a rough estimate of what is read
    held_out = int(code(["json", "email"], True) * 1.18)
    assert held_out > 0 and estimated_size(SourceSpec("stdlib", packages="json+email", part="held-out")) == held_out
    assert estimated_size(SourceSpec("stdlib")) == int(code(None, False) * 1.18) + 500_000
    assert estimated_size(SourceSpec("stdlib", part="held-out")) == int(code(None, True) * 1.18)
