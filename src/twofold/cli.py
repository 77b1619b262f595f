"""The `twofold` command line: parse, call the library, print.

User errors (`TwofoldError`) print one line and exit 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import twofold.commands
from twofold._version import __version__
from twofold.errors import TwofoldError


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        result = args.func(args)
    except TwofoldError as error:
        print(f"twofold: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("twofold: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
