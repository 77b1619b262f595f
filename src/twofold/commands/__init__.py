"""CLI sub-commands, one module per area. Each module exposes `register(subparsers)`.

The modules stay thin: parse, call the library, print. `twofold.cli` collects them.
"""
