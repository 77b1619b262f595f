"""What a command did to the files under a folder: snapshot the tree's bytes before, compare after.

    tree = Tree(tmp_path)
    ... run a command ...
    tree.assert_unchanged()     # a refused command: nothing written, nothing lost
    tree.assert_kept()          # a failed one: every file that existed is byte-identical
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def _read(root: Path) -> dict[str, str | None]:
    """Relative path -> sha256 of the bytes (None for a folder)."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        found[name] = None if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


class Tree:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.before = _read(self.root)

    def changes(self) -> tuple[list[str], list[str], list[str]]:
        """(changed, removed, added) paths since the snapshot."""
        after = _read(self.root)
        changed = [name for name in self.before if name in after and after[name] != self.before[name]]
        removed = [name for name in self.before if name not in after]
        added = [name for name in after if name not in self.before]
        return changed, removed, added

    def assert_kept(self) -> list[str]:
        """Every file and folder of the snapshot is still there, byte-identical; return what was added."""
        changed, removed, added = self.changes()
        assert not changed and not removed, f"changed {changed}, removed {removed} under {self.root}"
        return added

    def assert_unchanged(self) -> None:
        """Nothing changed, nothing removed, nothing added."""
        added = self.assert_kept()
        assert not added, f"written under {self.root}: {added}"
