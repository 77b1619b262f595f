"""Small file helpers: reads that fail in one line, writes that survive crashes, output checks.

Every file twofold reads back (manifests, run and pair files, checkpoint state, configs) goes
through `read_json`, so a torn or edited file is one `TwofoldError` line, never a traceback.
Every output is written whole or not at all (`atomic_write`, `staged_directory`), and every
command checks its output location with `check_out` before any work.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from twofold.errors import TwofoldError

# errno values that describe the machine or the user's paths, not a bug in twofold: the CLI
# reports them in one line (`describe_os_error`); any other OSError keeps its traceback.
_ADVICE = {
    errno.ENOSPC: "free space and run again",
    errno.EDQUOT: "free space (disk quota) and run again",
    errno.EFBIG: "the file system refuses files this large; write elsewhere",
    errno.EROFS: "the location is read-only; choose a writable location",
    errno.EACCES: "choose a location you may write to",
    errno.EPERM: "choose a location you may write to",
    errno.EIO: "the device reported an I/O error; check the disk",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EISDIR: "the path is a folder, not a file; check the path",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
    errno.EEXIST: "the path exists; choose another",
}


def describe_os_error(error: OSError) -> str | None:
    """One line for an OSError caused by the machine or a path (disk full, read-only …); None otherwise."""
    advice = _ADVICE.get(error.errno)
    if advice is None:
        return None
    where = error.filename if error.filename is not None else "output"
    return f"{where}: {error.strerror or os.strerror(error.errno)}; {advice}"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- reading


def read_json(path: str | Path, fix: str, kind: type | tuple[type, ...] = dict):
    """The JSON value of `path` (an object unless `kind` says otherwise); a missing, unreadable,
    torn or edited file is one line that names it and ends in `fix`."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise TwofoldError(f"{path}: missing; {fix}") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        where = f" ({error.msg} at line {error.lineno})" if isinstance(error, json.JSONDecodeError) else ""
        raise TwofoldError(f"{path}: not valid JSON{where}, torn or edited; {fix}") from None
    except OSError as error:
        raise TwofoldError(f"{path}: cannot be read ({error.strerror}); {fix}") from None
    if not isinstance(data, kind):
        names = {dict: "an object", list: "a list"}
        expected = " or ".join(names.get(k, k.__name__) for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise TwofoldError(f"{path}: expected JSON holding {expected}; {fix}")
    return data


def read_yaml(path: str | Path, fix: str):
    """`yaml.safe_load` of `path` (never executes anything); a bad file is one line ending in `fix`."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise TwofoldError(f"{path}: not valid YAML ({' '.join(str(error).split())[:200]}); {fix}") from None


# ---------------------------------------------------------------- where outputs go


def check_out(path: str | Path, kind: str, *, flag: str = "--out", holds: Callable[[Path], bool] | None = None,
              overwrite: bool | None = None, update: bool = False, taken: str = "") -> Path:
    """Refuse an output location before any work is done (a refused command writes nothing).

    `path` must be a new path or an empty folder, in a writable place, never a file. A folder
    that `holds` a `kind` already may be replaced when `overwrite` is True (commands without
    --overwrite pass None); `taken` is the advice for such a folder. `update`: a folder of
    results that the command adds to (eval, compare) may hold other files.
    """
    path = Path(path)
    replaceable = " (--overwrite replaces only a " + kind + ")" if overwrite is not None else ""
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise TwofoldError(f"{path}: is a file, not a folder{replaceable}; {flag} names a folder for the "
                               f"{kind}, choose another {flag}")
        if holds is not None and holds(path):
            if not overwrite:
                advice = taken or ("pass --overwrite to replace it or " if overwrite is not None else "") + \
                    f"choose another {flag}"
                raise TwofoldError(f"{path}: already holds a {kind}; {advice}")
        elif not update and any(path.iterdir()):
            raise TwofoldError(f"{path}: exists and holds other files, not a {kind}{replaceable}; "
                               f"choose a new or empty {flag}")
    _check_writable(path, flag)
    return path


def _check_writable(path: Path, flag: str) -> None:
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise TwofoldError(f"{existing}: is a file, so {path} cannot be created in it; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TwofoldError(f"{existing}: not writable (read-only or no permission); choose another {flag}")


# ---------------------------------------------------------------- writing


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory (a directory's fsync makes a rename inside it durable)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: str | Path, write: Callable[[str], object]) -> None:
    """`write(temporary_path)`, fsync, then rename onto `path`: the file is whole or absent."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(str(temporary))
        fsync_path(temporary)
        os.replace(temporary, path)
    except OSError as error:  # name the file the user knows, not the temporary one
        if error.errno is None or error.filename not in (None, str(temporary)):
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        if temporary.exists():
            temporary.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write` of a text file."""
    atomic_write(path, lambda temporary: Path(temporary).write_text(text))


@contextmanager
def staged_directory(out: str | Path) -> Iterator[Path]:
    """Build a folder as `.NAME.partial` beside `out`; move it onto `out` only once complete.

    `out` ends as the whole new folder or as it was (an empty folder or, when the caller allows
    it, an earlier output that is replaced). On any error the partial folder is removed; one left
    by a killed process is removed by the next run.
    """
    out = Path(out)
    partial = out.parent / f".{out.name}.partial"
    _remove(partial)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial.mkdir()
    try:
        yield partial
        publish_directory(partial, out)
    except OSError as error:  # name the output the user asked for, not the hidden partial folder
        shutil.rmtree(partial, ignore_errors=True)
        if error.errno is None:
            raise
        name = str(error.filename) if error.filename is not None else str(partial)
        raise OSError(error.errno, error.strerror, name.replace(str(partial), str(out), 1)) from error
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def sync_tree(folder: Path) -> None:
    """fsync every file under `folder`, then every folder, deepest first: whatever wrote them
    (numpy, tokenizers, a library's save_pretrained), their bytes are on disk before a rename
    publishes them."""
    for parent, _, files in os.walk(folder, topdown=False):
        for name in files:
            if not os.path.islink(os.path.join(parent, name)):  # a link's target is not this folder's
                fsync_path(Path(parent) / name)
        fsync_path(parent)


def publish_directory(new: Path, out: Path) -> None:
    """Sync folder `new` whole (`sync_tree`), then rename it onto `out` (`replace_directory`):
    after a crash `out` is the complete new folder or what it was, never a folder of torn files."""
    sync_tree(new)
    replace_directory(new, out)


def replace_directory(new: Path, out: Path) -> None:
    """Rename folder `new` onto `out`; an existing `out` is moved aside first, then removed."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists():
        old = out.parent / f".{out.name}.old"
        _remove(old)
        out.rename(old)
        new.rename(out)
        shutil.rmtree(old)
    else:
        new.rename(out)
    fsync_path(out.parent)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def as_os_error(error: Exception, path: str | Path) -> OSError | None:
    """The OSError behind a Rust library's I/O failure (safetensors, tokenizers: '… (os error 28)'),
    or None when `error` is not one."""
    found = re.search(r"os error (\d+)", str(error))
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(path))


def save_safetensors(tensors: dict, path: str | Path, metadata: dict | None = None) -> None:
    """safetensors' `save_file`, with its I/O failures (disk full …) raised as the OSError they are."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as error:
        raise as_os_error(error, path) or error from None


def save_figure(figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib `Figure` as PNG (whole or absent), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=dpi, format="png"))
    return path
