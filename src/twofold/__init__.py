"""twofold: paired encoder/decoder language models trained with one recipe."""

from twofold.errors import TwofoldError

__version__ = "0.1.0"

__all__ = ["TwofoldError", "__version__"]
