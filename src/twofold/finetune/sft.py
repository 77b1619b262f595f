"""Supervised fine-tuning of a decoder on prompt -> completion pairs, and its scoring by generation.

    build(base, recipe)         transformers' AutoModelForCausalLM and the export's tokenizer
    train(...)                  transformers' Trainer; the loss on the completion tokens only
    score(generator, examples)  greedy `generate`, then chrF / chrF++ / BLEU / exact match (sacrebleu)

An example is `[BOS] prompt completion [EOS]`, the prompt and the completion tokenized apart
(so generation starts from exactly the prompt's tokens), with label -100 on the BOS and every
prompt token: the causal-LM loss (transformers' own, shifted inside the model) is then the mean
negative log-likelihood of the completion and its EOS given the prompt, as TRL's
`completion_only_loss` defines it. transformers' `DataCollatorForSeq2Seq` pads the labels with
-100. An example longer than `max_length` keeps the end of its prompt and the start of its
completion (at least half the window).

TRL's `SFTTrainer` (1.16) is not used: it replaces the model's forward with a fused LM head that
projects the last hidden state through `get_output_embeddings()` alone, which skips
`ModernBertDecoderForCausalLM`'s prediction head (dense, activation, norm) and so optimises a
loss that is not the model's (`docs/finetuning.md`).

transformers (the `finetune` extra) is imported where used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from twofold.finetune.generation_data import Example
from twofold.finetune.inputs import BaseModel
from twofold.finetune.recipes import Recipe
from twofold.finetune.scoring import generation_scores, signatures
from twofold.finetune.training import OrderRecorder, train_with, training_args

IGNORE = -100  # the label the loss skips (PyTorch's cross_entropy ignore_index)
GENERATE_BATCH = 32


@dataclass
class Generator:
    """A transformers causal LM and its tokenizer, as the Trainer fine-tunes it and `generate` scores it."""

    model: torch.nn.Module
    tokenizer: object

    @property
    def bos(self) -> int:
        return self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.cls_token_id

    @property
    def eos(self) -> int:
        return self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.tokenizer.sep_token_id

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def decoding(recipe: Recipe) -> dict:
    """The decoding settings of every scored generation (recorded with the scores)."""
    return {"strategy": "greedy", "do_sample": False, "num_beams": 1, "max_new_tokens": recipe.max_new_tokens,
            "prompt_tokens": prompt_room(recipe), "stop": "eos", "library": "transformers generate"}


def prompt_room(recipe: Recipe) -> int:
    """Prompt tokens (BOS included) kept at generation: what leaves room for the new tokens in max_length."""
    return max(recipe.max_length - recipe.max_new_tokens, recipe.max_length // 2)


def encode(generator: Generator, example: Example, max_length: int) -> dict[str, list[int]]:
    """input_ids and labels of one training example: -100 on BOS and the prompt, the completion + EOS learned."""
    prompt = generator.ids(example.prompt)
    completion = [*generator.ids(example.completion), generator.eos]
    completion = completion[:max(max_length - 1 - len(prompt), max_length // 2)]
    keep = max_length - 1 - len(completion)
    prompt = [generator.bos, *(prompt[-keep:] if keep > 0 else [])]
    return {"input_ids": prompt + completion, "labels": [IGNORE] * len(prompt) + completion}


def build(base: BaseModel, recipe: Recipe) -> Generator:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return Generator(AutoModelForCausalLM.from_pretrained(base.path), AutoTokenizer.from_pretrained(base.path))


def trainer(generator: Generator, examples: list[Example], recipe: Recipe, lr: float, workdir: Path):
    """transformers' Trainer over the encoded examples, padded by `DataCollatorForSeq2Seq` (labels with -100)."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    rows = [encode(generator, e, recipe.max_length) for e in examples]
    dataset = Dataset.from_dict({key: [row[key] for row in rows] for key in ("input_ids", "labels")})
    collator = DataCollatorForSeq2Seq(generator.tokenizer, label_pad_token_id=IGNORE)
    return Trainer(model=generator.model, args=training_args(TrainingArguments, recipe, lr, workdir),
                   train_dataset=dataset, data_collator=collator)


def train(generator: Generator, examples: list[Example], recipe: Recipe, lr: float, workdir: Path,
          recorder: OrderRecorder) -> None:
    train_with(trainer(generator, examples, recipe, lr, workdir), recorder)


@torch.no_grad()
def generate(generator: Generator, prompts: list[str], recipe: Recipe) -> list[str]:
    """Greedy continuations of `prompts` (batched, left-padded), EOS and padding dropped."""
    model = generator.model.eval()
    device = next(model.parameters()).device
    pad = generator.tokenizer.pad_token_id
    room = prompt_room(recipe) - 1
    out = []
    for start in range(0, len(prompts), GENERATE_BATCH):
        batch = [[generator.bos, *generator.ids(p)[-room:]] for p in prompts[start:start + GENERATE_BATCH]]
        width = max(map(len, batch))
        ids = torch.tensor([[pad] * (width - len(row)) + row for row in batch], device=device)
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in batch], device=device)
        new = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=recipe.max_new_tokens,
                             do_sample=False, num_beams=1, eos_token_id=generator.eos, pad_token_id=pad)[:, width:]
        for row in new.tolist():
            row = row[:row.index(generator.eos)] if generator.eos in row else row
            out.append(generator.tokenizer.decode(row, skip_special_tokens=True))
    return out


def score(generator: Generator, examples: list[Example], recipe: Recipe) -> dict[str, float]:
    hypotheses = generate(generator, [e.prompt for e in examples], recipe)
    return generation_scores(hypotheses, [e.completion for e in examples])


def save(generator: Generator, out: Path) -> None:
    generator.model.save_pretrained(out)
    generator.tokenizer.save_pretrained(out)


def details(recipe: Recipe) -> dict:
    """What finetune.json records beside the scores: the decoding settings and sacrebleu's signatures."""
    return {"decoding": decoding(recipe), "signatures": signatures(), "loss": "completion tokens only"}
