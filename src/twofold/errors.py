"""User-facing errors.

A `TwofoldError` is a mistake in the user's input (a file, a key, a value), not a bug. Its
message is one line that says what is wrong, where, and what to do. The CLI prints it and
exits with code 2, without a traceback; tracebacks are for bugs.
"""


class TwofoldError(Exception):
    """Bad input: one clear line naming the file/key/value and what to do."""
