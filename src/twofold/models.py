"""Which model a name names: one answer for every command that takes a model.

A model is named by
- a Hugging Face model directory (`config.json` + safetensors): that model;
- a `twofold train` run (`run.json`): its newest intact checkpoint; `RUN@TAG`: its checkpoint
  tagged TAG (`decay2`, see `twofold.train.checkpoint`);
- a checkpoint directory (`RUN/checkpoints/NAME`, with `state.json`): that checkpoint;
- a pair run (`pair.json`) or a folder with `encoder/` and `decoder/`: both members, where a
  command takes a pair (`pair_members`);
- a hub id (`org/name`): downloaded by the library that loads it, where a library loads it.

`resolve` answers for one name, `pair_members` for a pair, `models_under` for every model under
a folder (a run's checkpoints, a pair, a folder of exports or of runs). Each command says which
kinds it takes; a name of another kind is refused in one line that says what to give instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.files import staged_directory
from twofold.hf import load, save_pretrained
from twofold.train import checkpoint
from twofold.train.rundir import PairDir, RunDir

HF, RUN, CHECKPOINT, PAIR, HUB = "hf", "run", "checkpoint", "pair", "hub"
KINDS = (HF, RUN, CHECKPOINT, PAIR, HUB)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# How each kind is named, for the one line that says what to give.
_GIVE = {HF: "a Hugging Face model directory", RUN: "a `twofold train` run (RUN or RUN@TAG)",
         CHECKPOINT: "a checkpoint directory", PAIR: "a pair run (or a folder with encoder/ and decoder/)",
         HUB: "a hub id (org/name)"}
_MARKS = {HF: "config.json", RUN: "run.json", CHECKPOINT: "state.json", PAIR: "pair.json"}


@dataclass
class ModelRef:
    """One named model, nothing loaded yet."""

    given: str  # as the user wrote it
    kind: str  # HF, RUN (a run's checkpoint, newest or tagged), CHECKPOINT, PAIR or HUB
    path: Path | None  # the HF, run, checkpoint or pair directory; None for a hub id
    name: str  # the label of its results: the directory's (or run's) name
    run: RunDir | None = None  # the run the checkpoint belongs to, when it has one
    checkpoint: Path | None = None  # the checkpoint directory (RUN, RUN@TAG, CHECKPOINT)

    @property
    def tag(self) -> str:
        """The checkpoint as a result's column names it: its tag, or its directory's name."""
        if self.checkpoint is None:
            return ""
        return checkpoint.read_state(self.checkpoint).get("tag") or self.checkpoint.name

    @property
    def tokens(self) -> int | None:
        """Training tokens the checkpoint had seen."""
        if self.checkpoint is None:
            return None
        return checkpoint.read_state(self.checkpoint)["progress"].get("tokens")

    def tokenizer(self) -> Path | None:
        """The model's tokenizer (a folder holding tokenizer.json, or the run's), if it has one."""
        if self.kind == HF:
            return self.path if (self.path / "tokenizer.json").is_file() else None
        return self.run.tokenizer() if self.run is not None else None

    def load(self):
        """The model (a `TwofoldModel`): the HF directory's, or the checkpoint's weights and config."""
        if self.kind == HF:
            return load(self.path)
        if self.checkpoint is not None:
            return (self.run or RunDir(self.checkpoint.parent.parent)).model(path=self.checkpoint)
        raise TwofoldError(f"{self.given}: a {self.kind} names no single model to load")

    def export(self, target: Path, tokenizer: str | Path | None = None) -> Path:
        """The model as a Hugging Face directory: its own, or the checkpoint written to `target`."""
        if self.kind == HF:
            return self.path
        if self.checkpoint is None:
            raise TwofoldError(f"{self.given}: a {self.kind} is no single checkpoint to export")
        with staged_directory(target) as staged:
            save_pretrained(self.load(), staged, tokenizer=tokenizer or self.tokenizer())
        return target


def resolve(given: str | Path, what: str = "model", accept: Sequence[str] = KINDS) -> ModelRef:
    """The model `given` names, of one of the kinds in `accept`; `what` names it in errors (`--init-from`)."""
    given = str(given)
    path, tag = Path(given), None
    if not path.exists() and "@" in given:
        head, _, tag = given.rpartition("@")
        path = Path(head)
    try:
        ref = _named(given, path, tag, what, accept)
    except TwofoldError as error:  # the run's own words (no such tag, no checkpoint yet), named as given
        if str(error).startswith(f"{what} {given}"):
            raise
        raise TwofoldError(f"{what} {given}: {error}") from None
    if ref.kind not in accept:
        raise TwofoldError(f"{what} {given} is {_GIVE[ref.kind]}; give {_choices(accept)}"
                           + (f", e.g. {path / 'encoder'}" if ref.kind == PAIR else ""))
    return ref


def _named(given: str, path: Path, tag: str | None, what: str, accept: Sequence[str]) -> ModelRef:
    if tag is not None and path.exists():
        if not RunDir.holds_run(path):
            raise TwofoldError(f"{what} {given}: {path} is no `twofold train` run (no run.json) to take "
                               f"checkpoint {tag!r} from; give {_choices(accept)}")
        run = RunDir(path)
        return ModelRef(given, RUN, path, path.name, run, run.checkpoint(tag))
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelRef(given, HF, path, path.name)
        if PairDir.holds_pair(path) or all((path / m).is_dir() for m in ("encoder", "decoder")):
            return ModelRef(given, PAIR, path, path.name)
        if RunDir.holds_run(path):
            run = RunDir(path)
            return ModelRef(given, RUN, path, path.name, run, run.checkpoint() if RUN in accept else None)
        if (path / "state.json").is_file():
            run_dir = path.parent.parent  # RUN/checkpoints/NAME
            run = RunDir(run_dir) if RunDir.holds_run(run_dir) else None
            return ModelRef(given, CHECKPOINT, path, run_dir.name if run else path.name, run, path)
    if path.exists():
        marks = ", ".join(_MARKS[kind] for kind in accept if kind in _MARKS)
        raise TwofoldError(f"{what} {given}: neither a twofold run nor a Hugging Face model directory "
                           f"(no {marks}); give {_choices(accept)}")
    if _HUB_ID.match(given) and HUB in accept:
        return ModelRef(given, HUB, None, given.split("/")[-1])
    raise TwofoldError(f"{what} {given}: no such file or directory; give {_choices(accept)}")


def _choices(accept: Sequence[str]) -> str:
    names = [_GIVE[kind] for kind in KINDS if kind in accept]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def is_pair(path: str | Path) -> bool:
    path = Path(path)
    return PairDir.holds_pair(path) or all((path / m).is_dir() for m in ("encoder", "decoder"))


def pair_members(given: str | Path, what: str = "pair", accept: Sequence[str] = (HF, RUN)) -> tuple[ModelRef, ModelRef]:
    """(encoder, decoder) of a pair run or of a folder holding encoder/ and decoder/, each named by its member."""
    path = Path(given)
    if not is_pair(path):
        raise TwofoldError(f"{what} {given}: not a pair run (no pair.json) nor a folder with encoder/ and decoder/; "
                           f"give {_GIVE[PAIR]}")
    members = []
    for member in ("encoder", "decoder"):
        ref = resolve(path / member, what, accept)
        ref.name = member
        members.append(ref)
    return members[0], members[1]


def models_under(path: str | Path, all_checkpoints: bool = False) -> list[ModelRef]:
    """Every model under `path`: an HF directory; a run's newest checkpoint (or with
    `all_checkpoints` each tagged one); a pair or a folder of them: each of its models."""
    path = Path(path)
    if not path.is_dir():
        raise TwofoldError(f"{path}: not a directory; give {_choices((HF, RUN, PAIR))}, or a folder of them")
    if (path / "config.json").is_file():
        if all_checkpoints:
            raise TwofoldError(f"{path} is one model; --all-checkpoints needs a training run (a folder with run.json)")
        return [ModelRef(str(path), HF, path, path.name)]
    if RunDir.holds_run(path):
        run = RunDir(path)
        # the newest as it is: a damaged one is refused when it is read, not passed over
        paths = run.checkpoints(tagged_only=True) if all_checkpoints else run.checkpoints()[-1:]
        if not paths:
            raise TwofoldError(f"{path}: no {'tagged ' if all_checkpoints else ''}checkpoints yet; "
                               "train longer or give another run")
        return [ModelRef(str(path), RUN, path, path.name, run, p) for p in paths]
    children = [c for c in sorted(path.iterdir())
                if c.is_dir() and (RunDir.holds_run(c) or ((c / "config.json").is_file() and not all_checkpoints))]
    if not children:
        what = "training runs (folders with run.json)" if all_checkpoints else "model directories or training runs"
        raise TwofoldError(f"{path}: not a model directory (no config.json) and holds no {what}; "
                           f"give {_choices((HF, RUN, PAIR))}, or a folder of them")
    return [ref for child in children for ref in models_under(child, all_checkpoints)]
