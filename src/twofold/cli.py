"""The `twofold` command line: parse, call the library, print.

User errors (`TwofoldError`) and the machine's refusals (disk full, read-only location: see
`twofold.files.describe_os_error`) print one line and exit 2; warnings print one line
(`twofold: warning: …`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import threading
import warnings
from pathlib import Path

import twofold.commands
from twofold._version import __version__
from twofold.errors import TwofoldError
from twofold.files import describe_os_error

_PACKAGE = str(Path(twofold.commands.__file__).parents[1])


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are user errors too: one line, exit 2 (sub-commands inherit this)."""

    def error(self, message: str):
        raise TwofoldError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="twofold",
        description="Train, convert, evaluate and compare paired encoder/decoder language models.",
    )
    parser.add_argument("--version", action="version", version=f"twofold {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(twofold.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"twofold.commands.{module_info.name}")
        module.register(subparsers)
    return parser


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """One line per warning, as errors are; a library's warning says where it came from."""
    text = " ".join(str(message).split())
    if not str(filename).startswith(_PACKAGE):
        text = f"{text} ({category.__name__} from {Path(filename).name}:{lineno})"
    print(f"twofold: warning: {text}", file=file or sys.stderr)


def _interrupt(signum, frame) -> None:
    """SIGTERM (`kill`, `timeout`, a batch scheduler) as Ctrl-C: the `finally` blocks that remove
    half-made outputs (a fine-tune's hidden `.OUT.tmp-PID` folder, staged writes) run on both."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    on_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers live
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main_thread else None
    try:
        return _run(parser, argv)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            args = parser.parse_args(argv)
            if not getattr(args, "func", None):
                parser.print_help()
                return 2
            result = args.func(args)
        except TwofoldError as error:
            print(f"twofold: error: {' '.join(str(error).splitlines())}", file=sys.stderr)
            return 2
        except OSError as error:
            line = describe_os_error(error)
            if line is None:
                raise
            print(f"twofold: error: {line}", file=sys.stderr)
            return 2
        except (KeyboardInterrupt, Exception) as error:
            if not _started_by_interrupt(error):
                raise
            print("twofold: interrupted", file=sys.stderr)
            return 130
    return int(result or 0)


def _started_by_interrupt(error: BaseException | None) -> bool:
    """Is Ctrl-C or SIGTERM at the root of this error? An interrupt can come back wrapped: Python 3.11
    turns one raised while a class is made (`__set_name__`: any dataclass) into a RuntimeError, and
    transformers' lazy imports turn that into an import error of their own."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


if __name__ == "__main__":
    raise SystemExit(main())
