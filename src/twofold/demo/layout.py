"""The demo's folder (`DemoLayout`), what it writes there and keeps of an earlier run, and its sizes."""

from __future__ import annotations

import math
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.eval.settings import Settings
from twofold.train.recipe import load_recipe

DEMO_VOCAB = 4096
# Training tokens per member: what the encoder needs to leave the masked-LM plateau (docs/demo.md).
DEMO_BUDGET = 2_500_000
HELD_OUT_SEQUENCES = 16  # the fixed held-out set scored at every checkpoint
# Sample sizes that keep the evaluation of both members around two minutes on 2 cores.
DEMO_EVAL = Settings(max_length=128, lm_tokens=10_000, pseudo_perplexity_tokens=256, max_queries=300,
                     max_examples=1_000, epochs=2, learning_rate=3e-4)


COMPLETION_ITEMS = 200  # multiple-choice code completion items (binomial s.e. <= 0.035)
# Ettin's cross-objective continuations (arXiv 2507.11412): each member continued with the other
# member's objective for the recipe's `cross` phase. arm -> (the member it continues, its objective).
CROSS_ARMS = {"encoder-from-decoder": ("decoder", "mlm"), "decoder-from-encoder": ("encoder", "clm")}
ARMS = ("encoder", "decoder", *CROSS_ARMS)
KINDS = {"encoder": "encoder", "decoder": "decoder",
         **{arm: "encoder" if objective == "mlm" else "decoder" for arm, (_, objective) in CROSS_ARMS.items()}}
# What each fine-tune asks of a model: the retrieval and classification fine-tunes where the
# encoder is expected to win (both members and the decoder continued as an encoder), the
# generative one where the decoder is (both decoders).
FINE_TUNED_ARMS = {"embed": ("encoder", "decoder", "encoder-from-decoder"),
                   "classify": ("encoder", "decoder", "encoder-from-decoder"),
                   "generate": ("decoder", "decoder-from-encoder")}
# The downstream fine-tunes: the same for every model (twofold finetune's recipes, sized for a CPU).
DEMO_SEEDS = (1, 2, 3)
DOWNSTREAM_TASKS = ("code-search", "package-classification", "docstring-generation")
DOWNSTREAM_RECIPES = {
    "embed": dict(learning_rates=(1e-3,), batch_size=32, max_length=96, hard_negatives=0, epochs=1),
    "classify": dict(learning_rates=(1e-3,), batch_size=32, max_length=96, epochs=2),
    # code -> its docstring's first line, greedy decoding of at most 24 tokens (docs/demo.md)
    "generate": dict(learning_rates=(1e-3,), batch_size=16, max_length=128, epochs=1, max_new_tokens=24),
}
# training examples (None: all 667 of classify); "generate test": held-out functions scored by generation
DOWNSTREAM_TRAIN = {"embed": 1200, "classify": None, "generate": 500, "generate test": 200}

# Everything the demo writes into its folder (hidden names: partial outputs of a killed run).
JOBS_LOG = "jobs.log"  # what the worker processes print
DEMO_ENTRIES = {"tokenizer", "store", "pair", "cross", "export", "eval", "report.md", "loss.png", "schedule.png",
                "scores.png", "vs-parameters.png", "vs-tokens.png", JOBS_LOG}


def made_by_demo(root: Path) -> bool:
    return all(entry.name in DEMO_ENTRIES or entry.name.startswith(".") for entry in root.iterdir())


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def store(self) -> Path:
        return self.root / "store" / "train"

    @property
    def held_out_store(self) -> Path:
        return self.root / "store" / "held-out"

    @property
    def pair(self) -> Path:
        return self.root / "pair"

    def export(self, member: str) -> Path:
        return self.root / "export" / member

    def cross(self, arm: str) -> Path:
        """The run of a cross-objective arm."""
        return self.root / "cross" / arm

    @property
    def eval(self) -> Path:
        return self.root / "eval"


@contextmanager
def previous_kept(layout: DemoLayout):
    """A run that fails (disk full, interrupted, a bad input found late) leaves the previous
    demo's results as they were: they wait in `.previous` until the new ones are complete.
    The tokenizer and stores stay in place (reused, or rebuilt whole)."""
    replaced = DEMO_ENTRIES - {"tokenizer", "store"}
    keep = layout.root / ".previous"
    shutil.rmtree(keep, ignore_errors=True)
    old = [entry for entry in layout.root.iterdir() if entry.name in replaced]
    if old:
        keep.mkdir()
        for entry in old:
            os.replace(entry, keep / entry.name)
    try:
        yield
    except BaseException:
        for entry in layout.root.iterdir():
            if entry.name in replaced or entry.name == ".downstream":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        for entry in old:
            os.replace(keep / entry.name, entry)
        shutil.rmtree(keep, ignore_errors=True)
        raise
    shutil.rmtree(keep, ignore_errors=True)


def minimum_budget(recipe) -> int:
    """The smallest --budget at which every phase, cross included, gets at least one full batch."""
    total = sum(p.tokens for p in recipe.phases)
    needs = [(p.batch_start_sequences or p.batch_sequences) * p.seq_len * total / p.tokens
             for p in (*recipe.phases, *([recipe.cross] if recipe.cross else []))]
    return math.ceil(max(needs))


def check_budget(budget: int) -> None:
    """One line before anything is written when `budget` cannot give every phase a batch."""
    least = minimum_budget(load_recipe("demo"))
    if budget < least:
        raise TwofoldError(f"--budget {budget:,} is too small: every phase of the demo recipe (cross included) "
                           f"needs at least one batch, which takes --budget {least:,} or more")
