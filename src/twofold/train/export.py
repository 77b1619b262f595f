"""`export`: a checkpoint of a run in the Hugging Face format, with the stores' tokenizer."""

from __future__ import annotations

import sys
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.train import checkpoint
from twofold.train.runs import read_run


def export(run_dir: str | Path, out: str | Path, tag: str | None = None) -> Path:
    """Write checkpoint `tag` (default: the newest intact one) of a member run to `out`."""
    from twofold.data.store import TokenStore
    from twofold.hf import save_pretrained
    from twofold.model import ModelConfig, TwofoldModel

    run_dir = Path(run_dir)
    saved = read_run(run_dir)
    model = TwofoldModel(ModelConfig.from_dict(saved["model"]))
    root = run_dir / "checkpoints"
    if tag is None:
        if checkpoint.load_latest(root, model, restore_rng=False) is None:
            raise TwofoldError(f"{run_dir} has no checkpoint to export yet")
    else:
        checkpoint.load(checkpoint.find_tagged(root, tag), model, restore_rng=False)
    tokenizer = Path(TokenStore(saved["options"]["stores"][0]).manifest["tokenizer"]["path"])
    if not tokenizer.exists():
        print(f"twofold: warning: tokenizer {tokenizer} is gone; exporting the weights without it",
              file=sys.stderr)
        tokenizer = None
    return save_pretrained(model, out, tokenizer=tokenizer)
