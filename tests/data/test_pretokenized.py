"""Pre-tokenized sources: token ids from a JSONL field, a Parquet column (written with pyarrow)
or NumPy arrays become store documents unchanged (less the [CLS]/[SEP] framing the store adds
itself), checked against the tokenizer's vocabulary."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from twofold.cli import main
from twofold.data.store import TokenStore

DOCS = [[17, 5, 300, 42], [7] * 9, [511, 0 + 64, 65]]  # ids of a 512-token vocabulary


def prepare(tmp_path, tokenizer, source: str, out="store") -> int:
    return main(["data", "prepare", "--source", source, "--tokenizer", str(tokenizer.source),
                 "--out", str(tmp_path / out)])


def stored(path) -> list[list[int]]:
    store = TokenStore(path)
    return [store.document(i).tolist() for i in range(store.num_documents)]


def test_parquet_input_ids_are_stored_as_given(tmp_path, tokenizer):
    table = pa.table({"input_ids": pa.array(DOCS, type=pa.list_(pa.int32())), "id": ["a", "b", "c"]})
    pq.write_table(table, tmp_path / "order.parquet")
    assert prepare(tmp_path, tokenizer, f"path={tmp_path / 'order.parquet'},ids_field=input_ids,id_field=id") == 0
    assert stored(tmp_path / "store") == DOCS
    assert TokenStore(tmp_path / "store").doc_ids == ["a", "b", "c"]


def test_jsonl_ids_lose_the_framing_the_store_adds_itself(tmp_path, tokenizer):
    cls, sep = tokenizer.special.cls, tokenizer.special.sep
    lines = [{"input_ids": [cls, *DOCS[0], sep]}, {"input_ids": DOCS[1]}, {"input_ids": [cls, *DOCS[2]]}]
    (tmp_path / "ids.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert prepare(tmp_path, tokenizer, f"path={tmp_path / 'ids.jsonl'},ids_field=input_ids") == 0
    assert stored(tmp_path / "store") == DOCS


def test_numpy_arrays_one_document_or_a_document_per_row(tmp_path, tokenizer):
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "a.npy", np.asarray(DOCS[0], np.uint16))
    np.save(folder / "b.npy", np.asarray([[1, 2, 3], [4, 5, 6]], np.int64))
    assert prepare(tmp_path, tokenizer, f"path={folder},kind=numpy") == 0
    assert stored(tmp_path / "store") == [DOCS[0], [1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "numpy"])
def test_an_id_outside_the_vocabulary_is_one_line_and_no_store(tmp_path, tokenizer, capsys, kind):
    bad = [[1, 2], [3, 512]]  # 512 is one past a 512-token vocabulary
    if kind == "parquet":
        pq.write_table(pa.table({"input_ids": bad}), tmp_path / "bad.parquet")
        source = f"path={tmp_path / 'bad.parquet'},ids_field=input_ids"
    elif kind == "jsonl":
        (tmp_path / "bad.jsonl").write_text("".join(json.dumps({"input_ids": ids}) + "\n" for ids in bad))
        source = f"path={tmp_path / 'bad.jsonl'},ids_field=input_ids"
    else:
        np.save(tmp_path / "bad.npy", np.asarray(bad))
        source = str(tmp_path / "bad.npy")
    assert prepare(tmp_path, tokenizer, source) == 2
    err = capsys.readouterr().err
    assert "token id 512, outside the tokenizer's vocabulary of 512" in err and err.count("\n") == 1, err
    assert not (tmp_path / "store").exists()
