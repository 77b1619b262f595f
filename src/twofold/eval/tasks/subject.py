"""`Subject`: a model under evaluation, with the tokenizer and the labels its results carry."""

from __future__ import annotations

from dataclasses import dataclass, field

from twofold.data.tokenizer import Tokenizer
from twofold.eval.member import DECODER, ENCODER, Member
from twofold.model import TwofoldModel
from twofold.results import Result


@dataclass
class Subject:
    """A `Member` held loaded, with its tokenizer: what the built-in tasks run on."""

    model: TwofoldModel
    tokenizer: Tokenizer
    name: str
    checkpoint: str = ""
    tokens: int | None = None  # training tokens seen, for checkpoints
    member: Member = field(init=False)

    def __post_init__(self) -> None:
        self.tokenizer.check_fits(self.model.config.vocab_size, where=f"model {self.name}")
        self.model.eval()
        causal = self.model.config.causal
        self.member = Member(None, self.name, DECODER if causal else ENCODER, self.model.num_parameters(),
                             self.checkpoint, self.tokens, causal)

    @property
    def kind(self) -> str:
        return self.member.kind

    @property
    def causal(self) -> bool:
        return self.member.causal

    def result(self, task: str, metrics: dict[str, float], seed: int, n: int, variant: str = "",
               **details) -> Result:
        return self.member.result(task, metrics, seed, n, variant, details)
