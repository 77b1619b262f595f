"""The files layer: one-line read errors, writes whole or absent (observed reaching the disk in
order: fsync of the complete file, then the rename), output locations refused before any work."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from twofold.errors import TwofoldError
from twofold.files import (
    as_os_error,
    atomic_write,
    atomic_write_text,
    check_out,
    describe_os_error,
    read_json,
    read_yaml,
    save_figure,
    save_safetensors,
    sha256_file,
    staged_directory,
)

# ---------------------------------------------------------------- whole or absent


def test_atomic_write_fsyncs_the_whole_file_then_renames_it_over_the_old_one(tmp_path, disk):
    path = tmp_path / "record.json"
    path.write_text("old")
    atomic_write_text(path, "new contents")
    temporary = tmp_path / f".record.json.tmp-{os.getpid()}"
    assert disk.events == [("fsync", temporary, b"new contents"), ("rename", temporary, path)]
    assert path.read_text() == "new contents" and sorted(tmp_path.iterdir()) == [path]
    atomic_write(tmp_path / "bytes.bin", lambda temporary: Path(temporary).write_bytes(b"\x00\x01"))
    assert disk.synced_then_renamed(tmp_path / "bytes.bin") == b"\x00\x01"


def test_a_failed_write_leaves_the_old_file_and_names_the_real_path(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")

    def disk_full(temporary):
        Path(temporary).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device", temporary)

    with pytest.raises(OSError) as raised:
        atomic_write(path, disk_full)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(path))
    assert describe_os_error(raised.value) == f"{path}: No space left on device; free space and run again"

    def elsewhere(temporary):
        Path(temporary).write_text("half")
        raise OSError(errno.EACCES, "Permission denied", "/some/input")

    with pytest.raises(OSError) as raised:  # an error about another file keeps its name
        atomic_write(path, elsewhere)
    assert raised.value.filename == "/some/input"
    for error in (OSError("no errno"), ValueError("a bug")):  # kept as raised
        def failing(temporary, error=error):
            Path(temporary).write_text("half")
            raise error
        with pytest.raises(type(error)) as raised:
            atomic_write(path, failing)
        assert raised.value is error
    assert path.read_text() == "old" and sorted(tmp_path.iterdir()) == [path]


def test_save_figure_creates_its_folder_and_writes_a_png_whole(tmp_path, disk):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1))
    figure.add_subplot().plot([0, 1], [1, 0])
    path = save_figure(figure, tmp_path / "new" / "folder" / "plot.png", dpi=50)
    assert path == tmp_path / "new" / "folder" / "plot.png"
    assert disk.synced_then_renamed(path).startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    assert Image.open(path).size == (100, 50)  # figsize x dpi: the dpi given is the one used
    save_figure(figure, path.parent / "again.png")  # into a folder that exists, at the default dpi
    assert Image.open(path.parent / "again.png").size == (220, 110)


def test_save_safetensors_writes_tensors_and_raises_io_failures_as_os_errors(tmp_path):
    tensors = {"w": torch.arange(6.0).view(2, 3)}
    save_safetensors(tensors, tmp_path / "w.safetensors", metadata={"format": "pt"})
    assert torch.equal(load_file(tmp_path / "w.safetensors")["w"], tensors["w"])
    with safe_open(str(tmp_path / "w.safetensors"), framework="pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    with pytest.raises(OSError) as raised:
        save_safetensors(tensors, tmp_path / "missing" / "w.safetensors")
    assert (raised.value.errno, raised.value.filename) == (errno.ENOENT, str(tmp_path / "missing" / "w.safetensors"))
    assert as_os_error(RuntimeError("write failed (os error 28)"), "out.bin").args[:2] == \
        (errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert as_os_error(RuntimeError("write failed (os error 28)"), "out.bin").filename == "out.bin"
    assert as_os_error(RuntimeError("a tensor is not contiguous"), "out.bin") is None


# ---------------------------------------------------------------- folders built whole


def test_a_staged_folder_is_synced_then_renamed_onto_the_output_and_its_parent_synced(tmp_path, disk):
    out = tmp_path / "out"
    with staged_directory(out) as partial:
        assert partial == tmp_path / ".out.partial" and partial.is_dir() and not out.exists()
        (partial / "a.txt").write_text("a")  # written by any library, not through atomic_write
        (partial / "shards").mkdir()
        (partial / "shards" / "0.bin").write_bytes(b"\x00\x01")
        (partial / "link").symlink_to(tmp_path / "elsewhere")  # a dangling link is not synced
    assert disk.published_whole(out) == partial
    assert disk.events == [("fsync", partial / "shards" / "0.bin", b"\x00\x01"), ("fsync", partial / "shards", None),
                           ("fsync", partial / "a.txt", b"a"), ("fsync", partial, None), ("rename", partial, out),
                           ("fsync", tmp_path, None)]
    assert (out / "a.txt").read_text() == "a" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("before", ["absent", "empty", "an earlier output"])
def test_a_staged_folder_replaces_the_output_only_once_complete(tmp_path, before):
    out = tmp_path / "deep" / "out"
    if before != "absent":
        out.mkdir(parents=True)
    if before == "an earlier output":
        (out / "old.txt").write_text("old")
        (tmp_path / "deep" / ".out.old").mkdir()  # left by a run killed while replacing
        (tmp_path / "deep" / ".out.old" / "x").write_text("x")
    (tmp_path / "deep").mkdir(exist_ok=True)
    (tmp_path / "deep" / ".out.partial").write_text("left by a killed run")
    with pytest.raises(KeyError):
        with staged_directory(out) as partial:
            (partial / "new.txt").write_text("new")
            raise KeyError("interrupted")
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == {
        "absent": [], "empty": ["out"], "an earlier output": [".out.old", "out"]}[before]
    if before == "an earlier output":
        assert [p.name for p in out.iterdir()] == ["old.txt"]
    with staged_directory(out) as partial:
        (partial / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]


def test_an_os_error_inside_a_staged_folder_names_the_output(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OSError) as raised:
        with staged_directory(out) as partial:
            raise OSError(errno.ENOSPC, "No space left on device", str(partial / "weights.bin"))
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(out / "weights.bin"))
    with pytest.raises(OSError) as raised:
        with staged_directory(out):
            raise OSError(errno.EIO, "Input/output error")
    assert raised.value.filename == str(out)
    with pytest.raises(OSError) as raised:
        with staged_directory(out):
            raise OSError("no errno")
    assert raised.value.errno is None and raised.value.filename is None
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- reading


def test_sha256_of_a_file_larger_than_one_block(tmp_path):
    data = os.urandom((1 << 20) + 123)
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


def test_read_json_names_the_file_and_what_went_wrong(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"a": 1}')
    assert read_json(path, "fix it") == {"a": 1}
    path.write_text("[1, 2]")
    assert read_json(path, "fix it", kind=list) == [1, 2]
    assert read_json(path, "fix it", kind=(dict, list)) == [1, 2]
    cases = [
        (tmp_path / "absent.json", None, f"{tmp_path / 'absent.json'}: missing; fix it"),
        (path, '{"a": 1,\n', f"{path}: not valid JSON (Expecting property name enclosed in double quotes at line 2), "
         "torn or edited; fix it"),
        (path, b"\xff\xfe{", f"{path}: not valid JSON, torn or edited; fix it"),
        (path, "[1]", f"{path}: expected JSON holding an object; fix it"),
        (tmp_path, None, f"{tmp_path}: cannot be read (Is a directory); fix it"),
    ]
    for where, contents, message in cases:
        if isinstance(contents, bytes):
            where.write_bytes(contents)
        elif contents is not None:
            where.write_text(contents)
        with pytest.raises(TwofoldError) as raised:
            read_json(where, "fix it")
        assert str(raised.value) == message
    path.write_text("3")
    with pytest.raises(TwofoldError, match=r": expected JSON holding an object or a list; fix it$"):
        read_json(path, "fix it", kind=(dict, list))
    with pytest.raises(TwofoldError, match=r": expected JSON holding str; fix it$"):
        read_json(path, "fix it", kind=str)


def test_read_yaml_parses_safely_and_names_a_bad_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("phases:\n  - name: pre\n    tokens: 10\n")
    assert read_yaml(path, "fix it") == {"phases": [{"name": "pre", "tokens": 10}]}
    path.write_text("a: !!python/object/apply:os.system ['true']\n")  # never executed
    with pytest.raises(TwofoldError, match=rf"^{path}: not valid YAML \(.*\); fix it$"):
        read_yaml(path, "fix it")
    path.write_bytes(b"a: \xff\n")
    with pytest.raises(TwofoldError, match=rf"^{path}: not valid YAML"):
        read_yaml(path, "fix it")


def test_describe_os_error_gives_one_line_for_machine_errors_only():
    assert describe_os_error(OSError(errno.EROFS, "Read-only file system", "/mnt/x")) == \
        "/mnt/x: Read-only file system; the location is read-only; choose a writable location"
    assert describe_os_error(OSError(errno.ENOSPC, None)) == f"output: {os.strerror(errno.ENOSPC)}; free space and " \
        "run again"
    assert describe_os_error(OSError(errno.EBADF, "Bad file descriptor", "/x")) is None  # a bug: keep the traceback
    assert describe_os_error(OSError("no errno")) is None


# ---------------------------------------------------------------- where outputs go


def holds_model(path: Path) -> bool:
    return (path / "config.json").is_file()


def refusal(*args, **kwargs) -> str:
    with pytest.raises(TwofoldError) as raised:
        check_out(*args, **kwargs)
    return str(raised.value)


def test_check_out_accepts_new_and_empty_folders_and_refuses_the_rest(tmp_path):
    assert check_out(str(tmp_path / "new" / "deeper"), "model") == tmp_path / "new" / "deeper"
    (tmp_path / "empty").mkdir()
    assert check_out(tmp_path / "empty", "model") == tmp_path / "empty"
    (tmp_path / "file").write_text("x")
    assert refusal(tmp_path / "file", "model") == (f"{tmp_path / 'file'}: is a file, not a folder; --out names a "
                                                   "folder for the model, choose another --out")
    assert refusal(tmp_path / "file", "model", flag="--export", overwrite=False) == (
        f"{tmp_path / 'file'}: is a file, not a folder (--overwrite replaces only a model); --export names a "
        "folder for the model, choose another --export")
    assert refusal(tmp_path / "file" / "sub", "model") == (
        f"{tmp_path / 'file'}: is a file, so {tmp_path / 'file' / 'sub'} cannot be created in it; choose another --out")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert "is a file, not a folder" in refusal(tmp_path / "dangling", "model")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    assert refusal(other, "model", holds=holds_model) == (f"{other}: exists and holds other files, not a model; "
                                                          "choose a new or empty --out")
    assert refusal(other, "model", holds=holds_model, overwrite=True) == (
        f"{other}: exists and holds other files, not a model (--overwrite replaces only a model); choose a new or "
        "empty --out")
    assert check_out(other, "results", update=True) == other  # a folder of results that the command adds to


def test_check_out_replaces_a_previous_output_only_when_told(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert refusal(model, "model", holds=holds_model) == f"{model}: already holds a model; choose another --out"
    assert refusal(model, "model", holds=holds_model, overwrite=False) == (
        f"{model}: already holds a model; pass --overwrite to replace it or choose another --out")
    assert refusal(model, "model", holds=holds_model, overwrite=False, taken="resume it instead") == (
        f"{model}: already holds a model; resume it instead")
    assert check_out(model, "model", holds=holds_model, overwrite=True) == model


def test_check_out_refuses_a_location_nobody_may_write(read_only_dir):
    assert refusal(read_only_dir / "out" / "deeper", "model", flag="--export") == (
        f"{read_only_dir}: not writable (read-only or no permission); choose another --export")
    assert refusal(read_only_dir, "model") == (f"{read_only_dir}: not writable (read-only or no permission); "
                                               "choose another --out")
