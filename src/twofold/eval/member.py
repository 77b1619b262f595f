"""`Member`: one model under evaluation and the labels its results carry, in both rooms.

The suites (`twofold.eval.suites`) evaluate a Member's Hugging Face directory with the field's
libraries; the built-in tasks (`twofold.eval.tasks`) hold it loaded as a `Subject`. Either way
its results are made by `Member.result`, so a model is labelled alike wherever it was scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from twofold.errors import TwofoldError
from twofold.results import Result

# What a directory holds, as the suites see it.
ENCODER, DECODER, EMBEDDER, CLASSIFIER = "encoder", "decoder", "embedder", "classifier"


@dataclass
class Member:
    """One model under evaluation: its HF directory (None while only in memory) and its labels."""

    path: Path | None
    name: str
    kind: str  # ENCODER, DECODER, EMBEDDER (a Sentence Transformers directory) or CLASSIFIER
    parameters: int = 0
    checkpoint: str = ""
    tokens: int | None = None
    causal: bool = False  # the body's attention (an embedder or classifier of a decoder is causal)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.checkpoint}" if self.checkpoint else self.name

    @property
    def member_kind(self) -> str:
        """encoder or decoder: the side of the pair this model belongs to (for tables and plots)."""
        return DECODER if self.causal else ENCODER

    def result(self, task: str, metrics: dict[str, float], seed: int, n: int, variant: str = "",
               details: dict | None = None, **provenance) -> Result:
        """A Result labelled with this model; `provenance`: a suite's, library's and data's fields."""
        return Result(task=task, model=self.name, metrics=metrics, seed=seed, n=n, variant=variant,
                      kind=self.member_kind, parameters=self.parameters, checkpoint=self.checkpoint,
                      tokens=self.tokens, details=details or {}, **provenance)


def kind_of(path: Path) -> tuple[str, bool]:
    """(kind, causal) of an HF directory, from modules.json (Sentence Transformers) and config.json."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise TwofoldError(f"{path}: no config.json; pass a Hugging Face model directory or a training run")
    try:
        config = json.loads(config_file.read_text())
    except ValueError:
        raise TwofoldError(f"{config_file}: not valid JSON; export the model again") from None
    architectures = " ".join(config.get("architectures") or [])
    causal = config.get("model_type") == "modernbert-decoder" or "CausalLM" in architectures \
        or "Decoder" in architectures or bool(config.get("is_decoder"))
    if (path / "modules.json").is_file():
        return EMBEDDER, causal
    if "SequenceClassification" in architectures:
        return CLASSIFIER, causal
    return (DECODER if causal else ENCODER), causal


def count_parameters(path: Path) -> int:
    """Parameters stored in a directory's safetensors files, read from their headers (not loaded)."""
    total = 0
    for file in sorted(path.rglob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                count = 1
                for size in handle.get_slice(name).get_shape():
                    count *= size
                total += count
    return total


def member_of(path: Path, name: str | None = None, checkpoint: str = "", tokens: int | None = None) -> Member:
    kind, causal = kind_of(path)
    return Member(path, name or path.name, kind, count_parameters(path), checkpoint, tokens, causal)
