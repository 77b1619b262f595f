"""The models a suite run evaluates, as `Member`s: HF directories as they are, training
checkpoints exported just before their turn (and deleted after), pairs and sets of pairs.

PATH may be anything `twofold eval` takes (an HF directory, a run, a pair, a folder of them)
and also a folder of pairs (`runs/17m/`, `runs/32m/` … each with `pair.json` or `encoder/` and
`decoder/`): their members are named `17m/encoder`, `17m/decoder`, so the paper's figure joins
the encoders of every size in one line and the decoders in another.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.eval.member import DECODER, ENCODER, Member, count_parameters, member_of
from twofold.models import HF, ModelRef, is_pair, models_under


def suite_members(path: str | Path, all_checkpoints: bool = False, tokenizer: str | Path | None = None,
                  name: str | None = None) -> list[tuple[Member, ModelRef]]:
    """(member, the model it names) for every model under `path`, nothing loaded or exported yet."""
    path = Path(path)
    if path.is_dir() and not is_pair(path) and not (path / "config.json").is_file():
        pairs = [child for child in sorted(path.iterdir()) if child.is_dir() and is_pair(child)]
        if pairs:
            return [(replace_name(m, f"{pair.name}/{m.name}"), f) for pair in pairs
                    for m, f in suite_members(pair, all_checkpoints, tokenizer)]
    found = models_under(path, all_checkpoints)
    if name and len({f.name for f in found}) > 1:
        raise TwofoldError(f"--name labels one model, but {path} holds {len(found)}; leave --name out")
    members = []
    for f in found:
        if f.kind == HF:
            members.append((member_of(f.path, name or f.name), f))
        else:
            if (tokenizer or f.tokenizer()) is None:
                raise TwofoldError(f"no tokenizer found for {f.name}; pass --tokenizer DIR (a tokenizer.json or its "
                                   "folder): the libraries need it beside the exported checkpoint")
            causal = f.run.config().causal
            members.append((Member(f.checkpoint, name or f.name, DECODER if causal else ENCODER, 0, f.tag,
                                   f.tokens, causal), f))
    return members


def replace_name(member: Member, name: str) -> Member:
    member.name = name
    return member


@contextmanager
def exported(member: Member, found: ModelRef, scratch: Path, tokenizer: str | Path | None = None):
    """`member` with an HF directory: the model's own, or its checkpoint exported into `scratch` (removed after)."""
    if found.kind == HF:
        yield member
        return
    target = scratch / f"{member.label.replace('/', '_').replace('@', '_')}"
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        member.path = found.export(target, tokenizer)
        member.parameters = count_parameters(target)
        yield member
    finally:
        shutil.rmtree(target, ignore_errors=True)
