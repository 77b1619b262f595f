"""Samples for the report: decoder continuations of fixed prompts, encoder fill-mask guesses.

The prompts are Python and English, like the built-in corpus. Continuations are sampled as the
field samples (nucleus sampling, Holtzman et al., arXiv 1904.09751, with a temperature below 1):
greedy decoding of a small model repeats itself ("#\n#\n#..."). The generator is seeded with the
evaluation's seed and the decoding settings are recorded with the samples, so a run is repeatable.
"""

from __future__ import annotations

import torch

from twofold.eval.settings import Settings
from twofold.eval.tasks.subject import Subject
from twofold.eval.text import device_of, pad
from twofold.results import Result

# Decoding of the continuations: what the field uses for open-ended samples.
SAMPLING = {"do_sample": True, "temperature": 0.8, "top_p": 0.95}

PROMPTS = (
    "def read_file(path):\n",
    "import os\n\n\ndef",
    "class Stack:\n    \"\"\"",
    "Return the number of",
    "    for line in",
)
# `{mask}` is replaced by the tokenizer's mask token.
MASKED = (
    "def __init__(self, {mask}):",
    "import {mask}",
    "    return {mask}",
    "for i in {mask}(10):",
    "Return the {mask} of the list.",
)


@torch.no_grad()
def continuations(subject: Subject, settings: Settings) -> list[dict]:
    """All prompts in one batch (generate aligns them); padding and EOS are dropped from the text."""
    tokenizer = subject.tokenizer
    special = tokenizer.special
    prompts = [[special.bos, *ids] for ids in tokenizer.encode_batch(list(PROMPTS))]
    ids, mask = pad(prompts, special.pad, device_of(subject.model))
    generator = torch.Generator(ids.device).manual_seed(settings.seed)
    out = subject.model.generate(ids, mask, max_new_tokens=settings.max_new_tokens, eos_token_id=special.eos,
                                 pad_token_id=special.pad, generator=generator, **SAMPLING)
    samples = []
    for prompt, row in zip(PROMPTS, out[:, ids.shape[1]:].tolist()):
        new = row[:row.index(special.eos)] if special.eos in row else row
        samples.append({"prompt": prompt, "output": tokenizer.decode(t for t in new if t != special.pad)})
    return samples


@torch.no_grad()
def fill_masks(subject: Subject, top_k: int = 5) -> list[dict]:
    tokenizer = subject.tokenizer
    mask_text = tokenizer.backend.id_to_token(tokenizer.special.mask)
    samples = []
    for template in MASKED:
        text = template.format(mask=mask_text)
        ids = [tokenizer.special.cls, *tokenizer.encode_batch([text])[0], tokenizer.special.sep]
        guesses = subject.model.fill_mask(torch.tensor(ids, device=device_of(subject.model)), top_k=top_k)[0]
        samples.append({"prompt": text, "output": [
            {"token": tokenizer.decode([g["token_id"]]), "score": round(g["score"], 4)} for g in guesses]})
    return samples


def samples(subject: Subject, settings: Settings) -> list[Result]:
    if not subject.causal:
        found, extra = fill_masks(subject), {}
    else:  # continuations carry how they were decoded
        found = continuations(subject, settings)
        extra = {"decoding": {**SAMPLING, "seed": settings.seed, "max_new_tokens": settings.max_new_tokens}}
    return [subject.result("samples", {}, settings.seed, len(found), samples=found, **extra)]
