"""What reaches the disk, observed at the os calls every writer goes through (the `disk` fixture
of tests/conftest.py): writes that promise to be whole or absent are checked against it."""

from __future__ import annotations

import os
from pathlib import Path


class Disk:
    """What reaches the disk, in order: ("fsync", path, its bytes then, None for a folder) and
    ("rename", from, to)."""

    def __init__(self, monkeypatch):
        self.events: list[tuple] = []
        opened: dict[int, Path] = {}
        real_open, real_fsync, real_replace, real_rename = os.open, os.fsync, os.replace, os.rename

        def open_(path, flags, *args, **kwargs):
            descriptor = real_open(path, flags, *args, **kwargs)
            opened[descriptor] = Path(path)
            return descriptor

        def fsync(descriptor):
            # a descriptor from Python's open() (handle.fileno()) is found through /proc (Linux)
            path = opened.get(descriptor) or Path(os.readlink(f"/proc/self/fd/{descriptor}"))
            self.events.append(("fsync", path, path.read_bytes() if path.is_file() else None))
            real_fsync(descriptor)

        def renamer(real):
            def rename(source, target, *args, **kwargs):
                self.events.append(("rename", Path(source), Path(target)))
                return real(source, target, *args, **kwargs)
            return rename

        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", renamer(real_replace))
        monkeypatch.setattr(os, "rename", renamer(real_rename))

    def _last_rename_onto(self, path: Path) -> int:
        renames = [i for i, e in enumerate(self.events) if e[0] == "rename" and e[2] == path]
        assert renames, f"{path} was never renamed into place: {self.events}"
        return renames[-1]

    def synced_then_renamed(self, path: Path) -> bytes:
        """The bytes fsynced for the file renamed onto `path`; fails unless the fsync of those whole
        bytes came before the rename, from a temporary beside `path`."""
        at = self._last_rename_onto(path)
        source = self.events[at][1]
        assert source.parent == path.parent and source.name.startswith(f".{path.name}.tmp-")
        synced = [e[2] for e in self.events[:at] if e[:2] == ("fsync", source)]
        assert synced and synced[-1] == path.read_bytes(), f"{path} renamed before its bytes were fsynced"
        return synced[-1]

    def published_whole(self, out: Path) -> Path:
        """The hidden folder renamed onto `out`; fails unless, before that rename, every file now in
        `out` was fsynced with the bytes it holds and every folder after the files in it, and unless
        `out`'s parent was fsynced after the rename (which makes the rename itself durable)."""
        at = self._last_rename_onto(out)
        source = self.events[at][1]
        assert source.parent == out.parent and source.name.startswith("."), source
        before = self.events[:at]
        for path in sorted(p for p in out.rglob("*") if not p.is_symlink()):
            staged = source / path.relative_to(out)
            synced = [i for i, e in enumerate(before) if e[:2] == ("fsync", staged)]
            assert synced, f"{staged} was renamed into {out} without an fsync"
            if path.is_file():
                assert before[synced[-1]][2] == path.read_bytes(), f"{staged} changed after its fsync"
            else:
                inner = [i for i, e in enumerate(before) if e[0] == "fsync" and staged in e[1].parents]
                assert max(inner, default=-1) < synced[-1], f"{staged} was synced before the files in it"
        assert ("fsync", source, None) in before, f"{source} itself was never synced"
        assert ("fsync", out.parent, None) in self.events[at:], f"{out.parent} not synced after the rename"
        return source
