"""MDS shards (mosaicml-streaming's format, the published Ettin phase data) read by twofold's own
reader. The shards are written by the real `streaming.MDSWriter`, which does not install beside
twofold (it pins transformers<5 and numpy<2.2): these checks run in .venv-mds (`make mds`),
which `make test` runs with `-m mds`, as the PyLate checks run in .venv-colbert."""

import json

import numpy as np
import pytest

from twofold.cli import main
from twofold.data.mds import read_mds
from twofold.data.store import TokenStore

RNG = np.random.default_rng(3)
SAMPLES = [{"input_ids": RNG.integers(5, 500, RNG.integers(1, 300)).astype(np.uint32), "text": f"document {i} é",
            "id": f"doc-{i}", "lang": ["en", "fr"][i % 2]} for i in range(40)]
COLUMNS = {"input_ids": "ndarray:uint32", "text": "str", "id": "str", "lang": "str"}


def mds_writer():
    """streaming's real `MDSWriter`. The package's top-level __init__ also imports its torchvision
    datasets, whose compiled ops need torchvision's own torch build; the writer uses none of it,
    so the package is entered without running that __init__."""
    import importlib.util
    import sys
    import types

    if "streaming" not in sys.modules:
        package = types.ModuleType("streaming")
        package.__path__ = list(importlib.util.find_spec("streaming").submodule_search_locations)
        sys.modules["streaming"] = package
    from streaming.base.format.mds.writer import MDSWriter

    return MDSWriter


def write_shards(folder, compression=None, columns=COLUMNS):
    with mds_writer()(out=str(folder), columns=columns, compression=compression, size_limit=4096) as writer:
        for sample in SAMPLES:
            writer.write({name: sample[name] for name in columns})
    return folder


@pytest.mark.mds
@pytest.mark.parametrize("compression", [None, "gz", "bz2:9"])
def test_shards_written_by_mdswriter_read_back_equal(tmp_path, compression):
    folder = write_shards(tmp_path / "mds", compression)
    assert len(json.loads((folder / "index.json").read_text())["shards"]) > 3  # several shards
    read = list(read_mds(folder))
    assert len(read) == len(SAMPLES)
    for (_, got), want in zip(read, SAMPLES):
        assert got["input_ids"].dtype == np.uint32 and np.array_equal(got["input_ids"], want["input_ids"])
        assert (got["text"], got["id"], got["lang"]) == (want["text"], want["id"], want["lang"])


@pytest.mark.mds
def test_dynamic_dtype_and_shape_arrays_and_scalars(tmp_path):
    columns = {"input_ids": "ndarray", "n": "int", "u": "uint16", "meta": "json"}
    with mds_writer()(out=str(tmp_path / "mds"), columns=columns) as writer:
        for i, sample in enumerate(SAMPLES[:5]):
            writer.write({"input_ids": sample["input_ids"].astype(np.int64).reshape(1, -1), "n": -i, "u": i,
                          "meta": {"i": i}})
    for i, (_, got) in enumerate(read_mds(tmp_path / "mds")):
        assert np.array_equal(got["input_ids"], SAMPLES[i]["input_ids"].reshape(1, -1))
        assert (got["n"], got["u"], got["meta"]) == (-i, i, {"i": i})


@pytest.mark.mds
def test_prepare_a_store_of_token_ids_from_mds_shards(tmp_path, tokenizer):
    folder = write_shards(tmp_path / "mds", "gz")
    assert main(["data", "prepare", "--source", f"path={folder},kind=mds,ids_field=input_ids,id_field=id,"
                 "group_field=lang", "--tokenizer", str(tokenizer.source), "--out", str(tmp_path / "store")]) == 0
    store = TokenStore(tmp_path / "store")
    assert [store.document(i).tolist() for i in range(store.num_documents)] == [
        s["input_ids"].tolist() for s in SAMPLES]
    assert store.doc_ids == [s["id"] for s in SAMPLES] and store.groups == ["en", "fr"]


@pytest.mark.mds
def test_a_missing_shard_is_one_line(tmp_path, tokenizer, capsys):
    folder = write_shards(tmp_path / "mds")
    (folder / "shard.00002.mds").unlink()
    assert main(["data", "prepare", "--source", f"path={folder},kind=mds", "--tokenizer", str(tokenizer.source),
                 "--out", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert "shard shard.00002.mds is missing" in err and err.count("\n") == 1, err
    assert not (tmp_path / "store").exists()


def test_a_folder_without_an_index_is_one_line(tmp_path, tokenizer, capsys):
    folder = tmp_path / "mds"
    folder.mkdir()
    (folder / "shard.00000.mds").write_bytes(b"\0" * 8)
    assert main(["data", "prepare", "--source", f"path={folder},kind=mds", "--tokenizer", str(tokenizer.source),
                 "--out", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert "no index.json" in err and err.count("\n") == 1, err
    assert not (tmp_path / "store").exists()
