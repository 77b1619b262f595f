"""CLI sub-commands, one module per area. Each module exposes `register(subparsers)`.

The modules stay thin: parse, call the library, print. `twofold.cli` collects them. They
import the library inside the function that runs a command: `twofold --help` and a command's
parsing would otherwise load torch and every room for any command.
"""

import argparse


def token_count(text: str) -> int:
    """argparse type for token counts written as recipes write them: 20M, 1.5B, 250K, 5e6."""
    from twofold.train.recipe import parse_number

    value = parse_number(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a token count (e.g. 250K, 20M, 1.5B)")
    return int(value)


def at_least(minimum: int):
    """argparse type for whole numbers >= `minimum` (counts, sizes, indices)."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: it must be at least {minimum}")
        return value

    return whole_number
