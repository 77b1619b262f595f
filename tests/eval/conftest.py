"""Tiny random encoder/decoder models and quick settings for the eval tests (the tokenizer: tests/conftest.py)."""

import importlib.util
from pathlib import Path

import pytest

import twofold
from twofold.eval.tasks import Settings
from twofold.model import TwofoldModel, preset

# The lm-eval suite's own tests import the suite, which needs lm-eval; the PyLate environment, which
# collects every test file for its `colbert` tests, has no lm-eval.
collect_ignore = [] if importlib.util.find_spec("lm_eval") else ["test_lmeval_suite.py"]

# Every task in a second or two with a tiny model.
TINY = Settings(max_length=48, batch_size=16, lm_tokens=300, pseudo_perplexity_tokens=12, max_queries=12,
                max_examples=24, min_per_class=20, epochs=1, max_new_tokens=4)


def tiny_model(tokenizer, causal: bool) -> TwofoldModel:
    s = tokenizer.special
    return TwofoldModel(preset("tiny", causal=causal, vocab_size=tokenizer.vocab_size, cls_token_id=s.cls,
                               sep_token_id=s.sep, pad_token_id=s.pad, mask_token_id=s.mask,
                               bos_token_id=s.bos, eos_token_id=s.eos))


def export_pair(folder, tokenizer):
    """A tiny random encoder and decoder saved as Hugging Face exports with the tokenizer:
    folder/encoder, folder/decoder (seed torch first for fixed weights)."""
    for name in ("encoder", "decoder"):
        twofold.save(tiny_model(tokenizer, name == "decoder"), Path(folder) / name,
                     tokenizer=Path(tokenizer.source).parent)
    return folder


def tagged_run(path, tokenizer, causal: bool):
    """A `twofold train` run folder holding a tiny model's checkpoints tagged step1 (3K tokens) and
    step2 (6K tokens), each with fresh random weights."""
    import json

    from twofold.train import checkpoint

    path.mkdir()
    model = tiny_model(tokenizer, causal=causal)
    (path / "run.json").write_text(json.dumps({"model": model.config.to_dict(), "options": {"stores": []}}))
    for step, tag in ((3, "step1"), (6, "step2")):
        model.reset_parameters()
        checkpoint.save(path / "checkpoints", step=step, states=checkpoint.capture(model),
                        progress={"tokens": step * 1000}, data={}, config=model.config.to_dict(), recipe={}, tag=tag)
    return path


class Bars:
    """A stand-in for `progress`: the bars opened (label, task, total, unit) and what each counted; each
    bar opened is this recorder, counting into its newest entry."""

    def __init__(self):
        self.opened, self.counted = [], []

    def __call__(self, *opened):
        self.opened.append(opened)
        self.counted.append(0)
        return self

    def update(self, n):
        self.counted[-1] += n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture(scope="session")
def encoder(tokenizer):
    return tiny_model(tokenizer, causal=False)


@pytest.fixture(scope="session")
def decoder(tokenizer):
    return tiny_model(tokenizer, causal=True)
