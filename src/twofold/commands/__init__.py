"""CLI sub-commands, one module per area. Each module exposes `register(subparsers)`.

The modules stay thin: parse, call the library, print. `twofold.cli` collects them. They
import the library inside the function that runs a command: `twofold --help` and a command's
parsing would otherwise load torch and every room for any command.

Every number the command line takes goes through one of the argparse types below, one per kind
of range: a value that is not finite or not in its range is refused while parsing, in one line
naming the flag and the range, before any work.

A flag that some case does not read is refused there (never silently ignored), and refused when
given at all: such flags default to None (or [] when repeatable), their defaults applied after,
so that one given with its default value is told from one left out (`given`).
"""

import argparse
import math


def token_count(text: str) -> int:
    """argparse type for token counts written as recipes write them: 20M, 1.5B, 250K, 5e6."""
    from twofold.train.recipe import parse_number

    value = parse_number(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a token count (a positive number, e.g. 250K, 20M, 1.5B)")
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


def number_in(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    """argparse type for a finite real number in the interval between `low` and `high` (each end
    closed unless `*_open`): learning rates, ratios, rates, scales. nan and inf are never numbers here."""
    upper = "∞)" if high == math.inf else f"{high:g}{')' if high_open else ']'}"
    interval = f"{'(' if low_open else '['}{low:g}, {upper}"
    wanted = "a finite positive number" if (low, low_open, high) == (0, True, math.inf) else \
        f"a finite number in {interval}"

    def finite_number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; it must be in {interval}") from None
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (math.isfinite(value) and above and below):
            raise argparse.ArgumentTypeError(f"{text.strip()} is out of range: it must be {wanted}")
        return value

    finite_number.interval = interval
    return finite_number


def numbers_in(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    """argparse type for a comma-separated list of `number_in` values, e.g. 1e-5,3e-5 or 0.3,0.7."""
    one = number_in(low, high, low_open, high_open)

    def finite_numbers(text: str) -> tuple[float, ...]:
        items = [item.strip() for item in text.split(",")]
        if not any(items) or not all(items):
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers in {one.interval}")
        return tuple(one(item) for item in items)

    return finite_numbers


POSITIVE = number_in(0, low_open=True)  # learning rates, epochs, scales, weights
FRACTION = number_in(0, 1)  # a share of something, ends included


def given(args: argparse.Namespace, flags: dict[str, str]) -> list[str]:
    """The flags of `flags` (destination -> flag) that the command line gave, whatever their value:
    each defaults to None (or [] when repeatable), so a value equal to the default counts as given."""
    return [flag for dest, flag in flags.items() if getattr(args, dest) is not None and getattr(args, dest) != []]
