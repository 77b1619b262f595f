"""`Subject`: a model under evaluation, with the tokenizer and the labels its results carry."""

from __future__ import annotations

from dataclasses import dataclass

from twofold.data.tokenizer import Tokenizer
from twofold.model import TwofoldModel
from twofold.results import Result


@dataclass
class Subject:
    model: TwofoldModel
    tokenizer: Tokenizer
    name: str
    checkpoint: str = ""
    tokens: int | None = None  # training tokens seen, for checkpoints

    def __post_init__(self) -> None:
        self.tokenizer.check_fits(self.model.config.vocab_size, where=f"model {self.name}")
        self.model.eval()

    @property
    def kind(self) -> str:
        return "decoder" if self.model.config.causal else "encoder"

    @property
    def causal(self) -> bool:
        return self.model.config.causal

    def result(self, task: str, metrics: dict[str, float], seed: int, n: int, variant: str = "",
               **details) -> Result:
        return Result(task=task, model=self.name, metrics=metrics, seed=seed, n=n, variant=variant,
                      kind=self.kind, parameters=self.model.num_parameters(),
                      checkpoint=self.checkpoint, tokens=self.tokens, details=details)
