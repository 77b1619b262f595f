"""twofold: paired encoder/decoder language models trained with one recipe.

    import twofold
    model = twofold.load("path/to/hf-dir")      # ModernBERT encoder or decoder
    twofold.save(model, "out/", tokenizer=...)  # loads with transformers' Auto classes
"""

from twofold._version import __version__
from twofold.errors import TwofoldError


def load(path, **kwargs):
    """Load a Hugging Face ModernBERT (encoder) or ModernBERT-decoder directory. See `twofold.hf.load`."""
    from twofold.hf import load as _load

    return _load(path, **kwargs)


def save(model, path, tokenizer=None, **kwargs):
    """Write the Hugging Face format. See `twofold.hf.save_pretrained`."""
    from twofold.hf import save_pretrained

    return save_pretrained(model, path, tokenizer=tokenizer, **kwargs)


__all__ = ["TwofoldError", "__version__", "load", "save"]
