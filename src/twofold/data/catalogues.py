"""Translation catalogues as a multilingual corpus that works offline: the gettext `.mo` files
an installed package ships (Django: about 100 locales of real, human-translated sentences).

Documents: for each catalogue file `…/locale/LOCALE/LC_MESSAGES/DOMAIN.mo`, its translated
messages (plural forms each on a line) joined by newlines, in group LOCALE (as the package
names it: `fr`, `pt_BR`, `zh_Hans`, …). The source language's text, the message ids, forms
group `en` (one document per catalogue folder, ids gathered over all its locales), so a
locale's document and the English one are translations of each other.

Split: a message is *held out* when the first 8 hex digits of
`sha256("twofold-gettext-split:" + LOCALE + "\\0" + message id)` are ≡ 0 mod 10 (about 10%,
stable across runs and machines for the same package version). `train` never contains a
held-out message of that locale.
"""

from __future__ import annotations

import hashlib
import importlib.util
import struct
from collections.abc import Iterator
from pathlib import Path

from twofold.data.documents import Document, decode_utf8
from twofold.errors import TwofoldError

PARTS = ("train", "held-out")
HELD_OUT_EVERY = 10
SOURCE_LANGUAGE = "en"
_MAGIC = {0x950412DE: "<", 0xDE120495: ">"}


def catalogue_root(path: str) -> Path:
    """A directory, or the folder of an installed package named `path` (e.g. django)."""
    folder = Path(path)
    if folder.is_dir():
        return folder
    spec = importlib.util.find_spec(path) if path.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise TwofoldError(f"source {path}: neither a directory nor an installed package; for Django's "
                           "catalogues: pip install 'twofold[multilingual]'")
    return Path(next(iter(spec.submodule_search_locations)))


def catalogue_files(root: Path) -> list[tuple[str, Path]]:
    """(locale, file) of every `locale/LOCALE/LC_MESSAGES/*.mo` under `root`, in a stable order."""
    found = sorted(p for p in root.rglob("*.mo") if p.parent.name == "LC_MESSAGES" and p.parent.parent.parent.name
                   == "locale")
    if not found:
        raise TwofoldError(f"source {root}: no gettext catalogues (locale/*/LC_MESSAGES/*.mo) found")
    return [(p.parent.parent.name, p) for p in found]


def read_mo(file: Path) -> list[tuple[str, list[str]]]:
    """(message id, translated forms) of a compiled catalogue, header and untranslated entries left out."""
    data = file.read_bytes()
    order = _MAGIC.get(struct.unpack("<I", data[:4])[0]) if len(data) >= 20 else None
    if order is None:
        raise TwofoldError(f"{file}: not a gettext .mo file (bad magic number)")
    _, count, ids_at, strings_at = struct.unpack(order + "4I", data[4:20])
    entries = []
    for index in range(count):
        id_length, id_offset = struct.unpack(order + "2I", data[ids_at + 8 * index:ids_at + 8 * index + 8])
        length, offset = struct.unpack(order + "2I", data[strings_at + 8 * index:strings_at + 8 * index + 8])
        message_id = decode_utf8(data[id_offset:id_offset + id_length])[0]
        forms = [f for f in decode_utf8(data[offset:offset + length])[0].split("\0") if f.strip()]
        message_id = message_id.split("\x04")[-1].split("\0")[0]  # drop the context, keep the singular
        if message_id and forms:
            entries.append((message_id, forms))
    return entries


def is_held_out(locale: str, message_id: str) -> bool:
    digest = hashlib.sha256(f"twofold-gettext-split:{locale}\0{message_id}".encode()).hexdigest()
    return int(digest[:8], 16) % HELD_OUT_EVERY == 0


def catalogue_documents(path: str, part: str = "train", source: str = "gettext") -> Iterator[Document]:
    """The documents described in the module docstring, catalogue by catalogue."""
    if part not in PARTS:
        raise TwofoldError(f"source {path}: part={part!r}; use one of {', '.join(PARTS)}")
    root = catalogue_root(path)
    held_out = part == "held-out"
    english: dict[Path, dict[str, None]] = {}  # catalogue folder → its message ids, in first-seen order
    for locale, file in catalogue_files(root):
        relative = file.relative_to(root).as_posix()
        lines = []
        for message_id, forms in read_mo(file):
            if is_held_out(locale, message_id) == held_out:
                lines += forms
            if is_held_out(SOURCE_LANGUAGE, message_id) == held_out:
                english.setdefault(file.parent.parent.parent, {})[message_id] = None
        if lines and locale != SOURCE_LANGUAGE:
            yield Document("\n".join(lines), f"{relative}#{part}", source, locale)
    for folder, ids in english.items():
        yield Document("\n".join(ids), f"{folder.relative_to(root).as_posix()}/ids#{part}", source, SOURCE_LANGUAGE)
