"""Generation scored as machine translation is: a decoder completes each test prompt, greedily,
and sacrebleu's chrF, chrF++ and BLEU (with their signatures) and exact match compare the
completions with the references (`twofold.finetune.scoring`).

The data is what `twofold finetune generate` reads (`--generate-data`, default the built-in
code -> docstring-line set, whose test split is the held-out modules' functions); with the same
`--seed`, a file's seeded test split is the one its fine-tune was scored on. `--generate-test`
scores one file whole instead. An encoder cannot generate: its result says so (continue it as a
decoder with `twofold train --init-from … --objective clm` first).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from twofold.eval.progress import progress
from twofold.eval.settings import Settings
from twofold.eval.tasks.subject import Subject
from twofold.eval.text import device_of, pad
from twofold.finetune.generation_data import Example, load_generation, read_examples
from twofold.finetune.scoring import generation_scores, signatures
from twofold.results import Result

TASK = "generate"


@lru_cache(maxsize=2)  # checked before an evaluation, then read by each model's task: read once
def _test_set(spec: str, test: str | None, template: str | None, source: str | None, target: str | None,
              seed: int, limit: int) -> tuple[str, tuple[Example, ...]]:
    if test:
        return test.split(",")[0].rsplit("/", 1)[-1], tuple(read_examples(test, template, source, target)[:limit])
    data = load_generation(spec, seed=seed, template=template, source_field=source, target_field=target)
    return data.name, tuple(data.test[:limit])


def test_set(settings: Settings) -> tuple[str, tuple[Example, ...]]:
    """(name, examples) scored: the test split of --generate-data, or --generate-test whole; at most max_examples."""
    return _test_set(settings.generate_data, settings.generate_test, settings.template, settings.source_field,
                     settings.target_field, settings.seed, settings.max_examples)


def decoding(settings: Settings) -> dict:
    return {"strategy": "greedy", "max_new_tokens": settings.max_new_tokens, "prompt_tokens": prompt_room(settings),
            "stop": "eos", "library": "twofold generate"}


def prompt_room(settings: Settings) -> int:
    """Prompt tokens (BOS included) kept: the end of the prompt, leaving room for the new tokens."""
    return max(settings.length - settings.max_new_tokens, settings.length // 2)


@torch.no_grad()
def complete(subject: Subject, prompts: list[str], settings: Settings) -> list[str]:
    """Greedy completions of `prompts`, batched (the model's generate aligns them), EOS and padding dropped."""
    special = subject.tokenizer.special
    room = prompt_room(settings) - 1
    out = []
    bar = progress(subject.name, TASK, len(prompts), "example")
    for start in range(0, len(prompts), settings.batch_size):
        batch = [[special.bos, *ids[-room:]] for ids in
                 subject.tokenizer.encode_batch(prompts[start:start + settings.batch_size])]
        ids, mask = pad(batch, special.pad, device_of(subject.model))
        new = subject.model.generate(ids, mask, max_new_tokens=settings.max_new_tokens, do_sample=False,
                                     eos_token_id=special.eos, pad_token_id=special.pad)[:, ids.shape[1]:]
        for row in new.tolist():
            row = row[:row.index(special.eos)] if special.eos in row else row
            out.append(subject.tokenizer.decode((t for t in row if t != special.pad), skip_special_tokens=True))
        bar.update(len(batch))
    bar.close()
    return out


def generation(subject: Subject, settings: Settings) -> list[Result]:
    if not subject.causal:
        return [subject.result(TASK, {}, settings.seed, 0, error=f"{subject.name} is an encoder and cannot generate; "
                               "continue it as a decoder first (`twofold train --init-from MODEL --objective clm`)")]
    name, examples = test_set(settings)
    hypotheses = complete(subject, [e.prompt for e in examples], settings)
    scores = generation_scores(hypotheses, [e.completion for e in examples])
    shown = [{"prompt": e.prompt[-200:], "reference": e.completion, "output": h}
             for e, h in zip(examples[:5], hypotheses)]
    return [subject.result(TASK, scores, settings.seed, len(examples), variant=name, decoding=decoding(settings),
                           signatures=signatures(), samples=shown)]
