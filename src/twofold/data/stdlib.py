"""The built-in `stdlib` corpus: text that every Python installation has, so no download.

Documents (all from the running interpreter's standard library):
- group `code`: the source of each module (`code:<module>`);
- group `prose`: the docstrings of each module joined (`docstrings:<module>`), and each topic of
  the language reference shipped in `pydoc_data` (`topic:<name>`).

Split: a module is *held out* when the first 8 hex digits of
`sha256("twofold-stdlib-split:" + dotted module name)` are ≡ 0 mod 10 (about 10% of modules,
stable across runs and machines for the same Python version). The `train` part never contains
any text of a held-out module; `held_out_functions()` lists the documented functions of the
held-out modules (name, docstring, code without the docstring, top-level package) for the
evaluation tasks (code search: docstring → code; classification: code → package).
Test suites, `site-packages`, IDLE, the encodings' tables and build configs are left out.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import re
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from twofold.data.documents import Document, decode_utf8
from twofold.errors import TwofoldError

PARTS = ("train", "held-out")
HELD_OUT_EVERY = 10
_SKIP_DIRS = {"test", "tests", "idle_test", "idlelib", "site-packages", "encodings", "__phello__",
              "turtledemo", "pydoc_data"}
_MIN_DOCSTRING = 20
_DOCSTRING = re.compile(
    r"(?:\A|:[ \t]*(?:#[^\n]*)?\n)(?:[ \t]*(?:#[^\n]*)?\n)*[ \t]*"  # first statement of a block
    r"([rRuU]?)(\"{3}|'{3}|\"|')((?:\\.|(?!\2)[^\\])*)\2"  # a string literal …
    r"(?=[ \t]*(?:#[^\n]*)?(?:\n|\Z))",  # … alone on its line
    re.S,
)


@dataclass(frozen=True)
class HeldOutFunction:
    name: str  # module.qualname
    module: str
    package: str  # top-level package, the classification label
    docstring: str
    code: str  # the function's source with its docstring removed


def stdlib_root() -> Path:
    return Path(sysconfig.get_path("stdlib"))


def stdlib_modules(packages: Iterable[str] | None = None) -> list[tuple[str, Path]]:
    """(dotted module name, file) of the corpus's modules, sorted by name."""
    wanted = set(packages) if packages else None
    modules = [(name, file) for name, file in _all_modules(stdlib_root())
               if wanted is None or name.split(".")[0] in wanted]
    if wanted is not None and not modules:
        raise TwofoldError(f"stdlib: no modules in packages {sorted(wanted)}; name top-level stdlib packages")
    return modules


@cache
def _all_modules(root: Path) -> tuple[tuple[str, Path], ...]:
    """Every corpus module under `root`, sorted; walked once per process (seconds: ~1,900 files)."""
    modules = []
    for file in root.rglob("*.py"):
        parts = file.relative_to(root).with_suffix("").parts
        if _SKIP_DIRS.intersection(parts[:-1]) or parts[0] in _SKIP_DIRS:
            continue
        if parts[0].startswith(("config-", "_sysconfigdata")) or "-" in "".join(parts):
            continue
        modules.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), file))
    return tuple(sorted(modules))


def is_held_out(module: str) -> bool:
    digest = hashlib.sha256(f"twofold-stdlib-split:{module}".encode()).hexdigest()
    return int(digest[:8], 16) % HELD_OUT_EVERY == 0


def stdlib_documents(part: str = "train", packages: Iterable[str] | None = None,
                     topics: bool = True) -> Iterator[Document]:
    """The documents of one part of the split; `packages` restricts to some top-level packages."""
    if part not in PARTS:
        raise TwofoldError(f"stdlib: part {part!r} is unknown; use one of {', '.join(PARTS)}")
    held_out = part == "held-out"
    for module, file in stdlib_modules(packages):
        if is_held_out(module) != held_out:
            continue
        source, _ = decode_utf8(file.read_bytes())
        yield Document(source, f"code:{module}", "stdlib", "code")
        docstrings = "\n\n".join(_docstrings(source))
        if docstrings:
            yield Document(docstrings, f"docstrings:{module}", "stdlib", "prose")
    if topics and not held_out and packages is None:
        from pydoc_data.topics import topics as reference

        for name in sorted(reference):
            yield Document(reference[name], f"topic:{name}", "stdlib", "prose")


def held_out_functions(packages: Iterable[str] | None = None) -> list[HeldOutFunction]:
    """Documented functions (and methods) of the held-out modules, in a stable order."""
    return documented_functions("held-out", packages)


def documented_functions(part: str = "held-out", packages: Iterable[str] | None = None) -> list[HeldOutFunction]:
    """Documented functions (and methods) of one part's modules, in a stable order.

    The `train` part's functions are what fine-tuning learns from (`twofold.finetune`); the
    held-out part's are what it, and the evaluation, score on.
    """
    if part not in PARTS:
        raise TwofoldError(f"stdlib: part {part!r} is unknown; use one of {', '.join(PARTS)}")
    functions = []
    for module, file in stdlib_modules(packages):
        if is_held_out(module) != (part == "held-out"):
            continue
        source, _ = decode_utf8(file.read_bytes())
        lines = source.splitlines(keepends=True)
        for qualname, node in _functions(source):
            docstring = ast.get_docstring(node)
            body_after = node.body[1:]
            if not docstring or len(docstring) < _MIN_DOCSTRING or not body_after:
                continue
            doc_node = node.body[0]
            start = (node.decorator_list[0] if node.decorator_list else node).lineno - 1
            code = lines[start:doc_node.lineno - 1] + lines[doc_node.end_lineno:node.end_lineno]
            functions.append(HeldOutFunction(
                name=f"{module}.{qualname}", module=module, package=module.split(".")[0],
                docstring=docstring, code="".join(code),
            ))
    return functions


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except SyntaxError:  # a few stdlib files are templates, not Python
        return None


def _docstrings(source: str) -> Iterator[str]:
    """Docstrings of a module: string literals that open a block (module, class, def, …).

    A regular expression, not `ast`: ten times cheaper, which matters because `prepare` reads
    the whole standard library. On CPython 3.11's stdlib it finds every docstring that
    `ast.get_docstring` finds on modules, classes and functions, plus a few in `if`/`try`
    blocks, which is fine for training prose.
    """
    for match in _DOCSTRING.finditer(source):
        prefix, quote, body = match.groups()
        try:
            text = ast.literal_eval(prefix + quote + body + quote)
        except (SyntaxError, ValueError):  # not a real literal (e.g. quotes in a comment)
            continue
        if isinstance(text, str) and text.strip():
            yield inspect.cleandoc(text)


def _functions(source: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    tree = _parse(source)
    if tree is None:
        return
    def visit(node: ast.AST, prefix: str) -> Iterator:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
    yield from visit(tree, "")
