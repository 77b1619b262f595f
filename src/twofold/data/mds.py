"""MDS shards, mosaicml-streaming's format, read without the library (which pins transformers<5
and numpy<2.2, so it does not install beside twofold). The published Ettin phase data
(jhu-clsp/ettin-{pretraining,extension,decay}-data) are MDS shards.

The format (streaming/base/format/mds/{writer,reader,encodings}.py in mosaicml/streaming):
a folder's `index.json` is `{"version": 2, "shards": [...]}`, each shard described by its
`column_names` (sorted), `column_encodings`, `column_sizes` (bytes if fixed, else null),
`samples`, `raw_data` / `zip_data` (`basename`, …) and `compression` (`gz`, `bz2`, `zstd`,
… optionally `:level`; then only the `zip_data` file exists). A shard file is `uint32 n`, then
`n + 1` uint32 offsets of the samples from the file start, then the samples; a sample is a
uint32 size for each column without a fixed size, then the columns' bytes in order.
Encodings read here: `ndarray[:dtype[:shape]]` (integer arrays), the integer scalars, `int`,
`str`, `bytes`, `json`. `pkl` (pickle) is refused: unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from twofold.errors import TwofoldError

INDEX = "index.json"
_SHAPE_DTYPES = {0: np.uint8, 1: np.uint16, 2: np.uint32, 3: np.uint64}
_VALUE_DTYPES = {8: "uint8", 9: "int8", 16: "uint16", 17: "int16", 18: "float16", 32: "uint32", 33: "int32",
                 34: "float32", 64: "uint64", 65: "int64", 66: "float64"}
_SCALARS = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float16", "float32",
            "float64")


def read_mds(folder: str | Path) -> Iterator[tuple[str, dict]]:
    """(sample id `shard-basename:index`, {column: value}) of every sample, in index order."""
    folder = Path(folder)
    index_file = folder / INDEX
    if not index_file.is_file():
        raise TwofoldError(f"MDS {folder}: no {INDEX}; give the folder that mosaicml-streaming's MDSWriter "
                           "wrote (its index.json beside the shards)")
    try:
        shards = json.loads(index_file.read_text())["shards"]
    except (ValueError, KeyError, TypeError):
        raise TwofoldError(f"MDS {index_file}: not an MDS index (a JSON object with `shards`)") from None
    for shard in shards:
        yield from _read_shard(folder, shard)


def _read_shard(folder: Path, shard: dict) -> Iterator[tuple[str, dict]]:
    if shard.get("format") != "mds" or shard.get("version") != 2:
        raise TwofoldError(f"MDS {folder / INDEX}: a shard of format {shard.get('format')!r} version "
                           f"{shard.get('version')!r}; only MDS version 2 is read")
    names, encodings, sizes = shard["column_names"], shard["column_encodings"], shard["column_sizes"]
    for name, encoding in zip(names, encodings):
        if encoding == "pkl":
            raise TwofoldError(f"MDS {folder / INDEX}: column {name!r} is pickled (`pkl`), which twofold never "
                               "loads (unpickling runs code); write it as ndarray, str or json")
    data = _shard_bytes(folder, shard)
    count = int(np.frombuffer(data, np.uint32, 1)[0])
    offsets = np.frombuffer(data, np.uint32, count + 1, offset=4)
    basename = shard["raw_data"]["basename"]
    for index in range(count):
        sample = data[offsets[index]:offsets[index + 1]]
        lengths, at = [], 0
        for size in sizes:
            if size is None:
                lengths.append(int(np.frombuffer(sample, np.uint32, 1, offset=at)[0]))
                at += 4
            else:
                lengths.append(size)
        values = {}
        for name, encoding, length in zip(names, encodings, lengths):
            values[name] = _decode(encoding, sample[at:at + length], name, basename)
            at += length
        yield f"{basename}:{index}", values


def _shard_bytes(folder: Path, shard: dict) -> bytes:
    """The shard's raw bytes: its raw file, or its compressed one decompressed."""
    raw = folder / shard["raw_data"]["basename"]
    if raw.is_file():
        return raw.read_bytes()
    zipped = folder / shard["zip_data"]["basename"] if shard.get("zip_data") else None
    if zipped is None or not zipped.is_file():
        raise TwofoldError(f"MDS {folder}: shard {shard['raw_data']['basename']} is missing (listed in {INDEX}); "
                           "put back every shard the index lists")
    algorithm = (shard.get("compression") or "").split(":")[0]
    if algorithm == "gz":
        import gzip

        return gzip.decompress(zipped.read_bytes())
    if algorithm == "bz2":
        import bz2

        return bz2.decompress(zipped.read_bytes())
    if algorithm == "zstd":
        try:
            import zstandard
        except ImportError:
            raise TwofoldError(f"MDS {zipped}: zstd-compressed; pip install zstandard (or decompress the "
                               "shards) to read it") from None
        return zstandard.ZstdDecompressor().decompressobj().decompress(zipped.read_bytes())
    raise TwofoldError(f"MDS {zipped}: compression {algorithm!r} is not read here; use gz, bz2 or zstd shards")


def _decode(encoding: str, data: bytes, column: str, shard: str):
    kind, _, rest = encoding.partition(":")
    if kind == "ndarray":
        return _ndarray(rest, data)
    if kind in _SCALARS:
        return np.frombuffer(data, kind)[0].item()
    if kind == "int":
        return int(np.frombuffer(data, np.int64)[0])
    if kind == "str":
        return data.decode("utf-8")
    if kind == "bytes":
        return data
    if kind == "json":
        return json.loads(data.decode("utf-8"))
    raise TwofoldError(f"MDS shard {shard}: column {column!r} has encoding {encoding!r}, which twofold does not "
                       "read; text (str, json) and token ids (ndarray, integers) are read")


def _ndarray(spec: str, data: bytes) -> np.ndarray:
    """streaming's NDArray encoding: `[dtype byte]` unless fixed, `[ndim<<2 | shape dtype][shape]`
    unless fixed, then the values."""
    fixed = spec.split(":") if spec else []
    at = 0
    if fixed:
        dtype = fixed[0]
    else:
        dtype, at = _VALUE_DTYPES[data[0]], 1
    if len(fixed) == 2:
        shape = tuple(int(d) for d in fixed[1].split(","))
    else:
        ndim, shape_dtype = data[at] >> 2, _SHAPE_DTYPES[data[at] & 3]
        shape = tuple(int(d) for d in np.frombuffer(data, shape_dtype, ndim, offset=at + 1))
        at += 1 + ndim * np.dtype(shape_dtype).itemsize
    return np.frombuffer(data, dtype, offset=at).reshape(shape)
