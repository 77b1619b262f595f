import pytest
from tests.data.conftest import read, write_jsonl

from twofold.data.documents import decode_utf8
from twofold.data.sources import (
    SourceSpec,
    parse_source_spec,
)
from twofold.errors import TwofoldError


def test_text_directory_gives_one_document_per_file_with_stable_ids(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "sub" / "a.txt").write_text("first")
    documents, stats = read(SourceSpec(str(tmp_path), name="notes", group="en"))
    assert [(d.doc_id, d.text, d.source, d.group) for d in documents] == [
        ("b.txt", "second", "notes", "en"), ("sub/a.txt", "first", "notes", "en")]
    assert len(stats.files) == 2


def test_text_file_split_by_blank_lines(tmp_path):
    file = tmp_path / "book.txt"
    file.write_text("one\nstill one\n\n  \ntwo\n\n\nthree\n")
    documents, _ = read(SourceSpec(str(file), split="blank-line"))
    assert [d.text for d in documents] == ["one\nstill one", "two", "three"]
    assert [d.doc_id for d in documents] == ["book.txt#0", "book.txt#1", "book.txt#2"]
    assert documents[0].group == "book"


def test_jsonl_text_field_id_field_and_group_field(tmp_path):
    file = write_jsonl(tmp_path / "c.jsonl", [
        {"content": "bonjour", "lang": "fr", "uid": 7, "extra": 1},
        {"content": "hello", "lang": "en", "uid": 8},
    ])
    documents, _ = read(parse_source_spec(f"path={file},text_field=content,group_field=lang,id_field=uid"))
    assert [(d.text, d.group, d.doc_id) for d in documents] == [("bonjour", "fr", "7"), ("hello", "en", "8")]
    plain, _ = read(SourceSpec(str(file), text_field="content"))
    assert [d.doc_id for d in plain] == ["c.jsonl:1", "c.jsonl:2"]


def test_jsonl_line_that_is_not_json_stops_with_file_and_line(tmp_path):
    file = tmp_path / "bad.jsonl"
    file.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(TwofoldError, match=r"bad.jsonl:2: not a JSON object"):
        read(SourceSpec(str(file)))


def test_jsonl_line_without_the_field_stops_with_file_and_line(tmp_path):
    file = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, {"body": "no text"}])
    with pytest.raises(TwofoldError, match=r"bad.jsonl:2: .*field 'text'"):
        read(SourceSpec(str(file)))


def test_bad_jsonl_lines_can_be_skipped_and_are_counted(tmp_path):
    file = tmp_path / "bad.jsonl"
    file.write_text('{"text": "a"}\nnot json\n{"other": 1}\n{"text": "b"}\n')
    documents, stats = read(SourceSpec(str(file), skip_bad_lines=True))
    assert [d.text for d in documents] == ["a", "b"]
    assert stats.bad_lines_skipped == 2


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path):
    file = tmp_path / "latin.txt"
    file.write_bytes("café \ufffd ok".encode() + b" caf\xe9 and \xff\xfe")
    documents, stats = read(SourceSpec(str(file)))
    assert documents[0].text.count("\ufffd") == 4  # one genuine, three replaced
    assert stats.replaced_characters == 3
    assert decode_utf8(b"plain") == ("plain", 0)


def test_parquet_source(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a doc", "", "another"], "lang": ["x", "y", "z"]}), tmp_path / "d.parquet")
    documents, stats = read(SourceSpec(str(tmp_path / "d.parquet"), group_field="lang"))
    assert [(d.text, d.group, d.doc_id) for d in documents] == [("a doc", "x", "d.parquet:1"),
                                                                ("another", "z", "d.parquet:3")]
    assert list(stats.files) == [str(tmp_path / "d.parquet")]


def test_parquet_without_the_text_column_is_a_clear_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "d.parquet")
    with pytest.raises(TwofoldError, match="no column 'text'"):
        read(SourceSpec(str(tmp_path / "d.parquet")))


@pytest.mark.parametrize("streaming", [False, True])
def test_hugging_face_datasets_source_from_local_files(tmp_path, streaming):
    file = write_jsonl(tmp_path / "hf.jsonl", [{"text": "first", "lang": "en"}, {"text": "second", "lang": "de"}])
    spec = SourceSpec("json", kind="hf", name="local", hf_data_files=str(file), streaming=streaming,
                      group_field="lang")
    documents, _ = read(spec)
    assert [(d.text, d.doc_id, d.source, d.group) for d in documents] == [
        ("first", "train:0", "local", "en"), ("second", "train:1", "local", "de")]


def test_unloadable_hugging_face_dataset_is_a_clear_error(tmp_path):
    spec = SourceSpec("json", kind="hf", hf_data_files=str(tmp_path / "none.jsonl"))
    with pytest.raises(TwofoldError, match="cannot load Hugging Face dataset"):
        read(spec)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(TwofoldError, match="no such file or directory"):
        read(SourceSpec(str(tmp_path / "missing.jsonl")))


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_source_is_a_clear_error(tmp_path, content):
    (tmp_path / "empty.txt").write_text(content)
    with pytest.raises(TwofoldError, match="empty source"):
        read(SourceSpec(str(tmp_path / "empty.txt")))
    with pytest.raises(TwofoldError, match="empty source"):
        read(SourceSpec(str(tmp_path), kind="jsonl"))


def test_source_spec_parsing_errors_name_the_bad_item():
    with pytest.raises(TwofoldError, match="bad item 'colour=red'"):
        parse_source_spec("path=x.jsonl,colour=red")
    with pytest.raises(TwofoldError, match="needs path="):
        parse_source_spec("group=en")
    with pytest.raises(TwofoldError, match="unknown kind 'csv'"):
        parse_source_spec("path=x,kind=csv")
    assert parse_source_spec("path=a.jsonl,skip_bad_lines=true").skip_bad_lines
