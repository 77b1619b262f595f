"""Run directories: the one owner of their layout. Every other module asks `RunDir` / `PairDir`.

A member run (one model, one objective):

    run.json          what was asked: recipe, options (stores …), model config, init_from
    checkpoints/      see `twofold.train.checkpoint`; tagged ones are `{step}-{tag}`
    metrics.jsonl     one line per optimizer step (and per held-out evaluation)
    {phase}/data_order/   the batch order of each phase (see `twofold.data.orderlog`)
    tensorboard/      optional scalars (`--tensorboard`)

A pair run is `pair.json` (recipe and options shared by both members) plus `encoder/` and
`decoder/`, two member runs trained with the identical recipe, seed and stores.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.files import atomic_write_text, check_out, read_json, staged_directory
from twofold.train import checkpoint

RUN_FILE = "run.json"
PAIR_FILE = "pair.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
MEMBERS = {"encoder": "mlm", "decoder": "clm"}  # member of a pair -> its objective


class RunDir:
    """A member run directory: what it was asked, its checkpoints, metrics and tokenizer."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @staticmethod
    def holds_run(path: str | Path) -> bool:
        return (Path(path) / RUN_FILE).is_file()

    # ------------------------------------------------------------ what was asked

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @cached_property
    def info(self) -> dict:
        """run.json: recipe, options, model config, init_from, world size, version."""
        if not self.run_file.is_file():
            raise TwofoldError(f"{self.path} is not a training run (no {RUN_FILE}); "
                               "give the --out of a `twofold train`")
        return read_json(self.run_file, "the run cannot be read; start it afresh in another --out")

    def write_info(self, info: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_file, json.dumps(info, indent=1) + "\n")
        self.__dict__["info"] = info

    def config(self):
        from twofold.model import ModelConfig

        return ModelConfig.from_dict(self.info["model"])

    @cached_property
    def recipe(self):
        """The recipe the run was started with (parsed once, here)."""
        return _saved_recipe(self.info)

    # ------------------------------------------------------------ checkpoints

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    def checkpoints(self, tagged_only: bool = False) -> list[Path]:
        """Checkpoint directories, oldest first; `tagged_only`: the phase checkpoints only."""
        paths = checkpoint.list_checkpoints(self.checkpoints_dir)
        return [p for p in paths if checkpoint.tag_of(p)] if tagged_only else paths

    def checkpoint(self, tag: str | None = None) -> Path:
        """The checkpoint tagged `tag`, or the newest intact one."""
        if tag is not None:
            return checkpoint.find_tagged(self.checkpoints_dir, tag)
        newest = checkpoint.newest_intact(self.checkpoints_dir)
        if newest is None:
            raise TwofoldError(f"{self.path}: the run has no checkpoint yet; train (or resume) it first")
        return newest

    def model(self, tag: str | None = None, path: Path | None = None):
        """The model of checkpoint `tag` (or `path`, or the newest intact one): its weights and
        the config it was written with (the RoPE θ of its phase)."""
        from twofold.model import ModelConfig, TwofoldModel

        found = checkpoint.load(path or self.checkpoint(tag), restore_rng=False)
        model = TwofoldModel(ModelConfig.from_dict(found.config))
        checkpoint.restore(checkpoint.States(found.states.model), model, where=f"checkpoint {found.path}")
        return model

    # ------------------------------------------------------------ what training wrote

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    def metrics(self) -> list[dict]:
        """The records of metrics.jsonl (a torn last line after a crash is skipped)."""
        if not self.metrics_file.is_file():
            return []
        records = []
        for line in self.metrics_file.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics_file, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Keep the records of steps up to `step` (0: none); a resumed run writes the rest again."""
        kept = [record for record in self.metrics() if record.get("step", 0) <= step]
        atomic_write_text(self.metrics_file, "".join(json.dumps(record) + "\n" for record in kept))

    def phase_dir(self, phase: str) -> Path:
        """Where a phase writes its batch-order log."""
        return self.path / phase

    def tokenizer(self) -> Path | None:
        """The tokenizer the run's first token store was made with, if it still exists."""
        stores = self.info.get("options", {}).get("stores") or []
        if not stores:
            return None
        manifest = Path(stores[0]) / "manifest.json"
        if not manifest.is_file():
            return None
        path = read_json(manifest, "prepare the store again").get("tokenizer", {}).get("path")
        return Path(path) if path and Path(path).exists() else None

    def export(self, out: str | Path, tag: str | None = None, overwrite: bool = False) -> Path:
        """Write checkpoint `tag` (default: the newest intact one) in the Hugging Face format.

        `out` must be new or empty, or with `overwrite` an earlier export, which is replaced
        only once the new one is complete.
        """
        import warnings

        from twofold.hf import save_pretrained

        check_out(out, "Hugging Face model", holds=lambda path: (path / "config.json").is_file(),
                  overwrite=overwrite)
        model = self.model(tag)
        tokenizer = self.tokenizer()
        if tokenizer is None:
            warnings.warn(f"the tokenizer of {self.path} is gone; exporting the weights without it", stacklevel=2)
        with staged_directory(out) as staged:
            save_pretrained(model, staged, tokenizer=tokenizer)
        return Path(out)


class PairDir:
    """A pair run: `pair.json` plus one `RunDir` per member."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @staticmethod
    def holds_pair(path: str | Path) -> bool:
        return (Path(path) / PAIR_FILE).is_file()

    @property
    def pair_file(self) -> Path:
        return self.path / PAIR_FILE

    @cached_property
    def info(self) -> dict:
        return read_json(self.pair_file, "the pair run cannot be read; start it afresh in another --out")

    @cached_property
    def recipe(self):
        """The recipe both members train with (parsed once, here)."""
        return _saved_recipe(self.info)

    def write_info(self, info: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.pair_file, json.dumps(info, indent=1) + "\n")
        self.__dict__["info"] = info

    def member(self, name: str) -> RunDir:
        if name not in MEMBERS:
            raise TwofoldError(f"{self.path}: no member {name!r}; a pair has {' and '.join(MEMBERS)}")
        return RunDir(self.path / name)


def member_run(path: str | Path, member: str | None = None) -> RunDir:
    """The member run at `path`, or member `member` of the pair run at `path`."""
    path = Path(path)
    if PairDir.holds_pair(path):
        if not member:
            raise TwofoldError(f"{path} is a pair run; choose --member encoder or --member decoder")
        return PairDir(path).member(member)
    if member:
        raise TwofoldError(f"{path} is a single-member run; drop --member")
    return RunDir(path)


def _saved_recipe(info: dict):
    from twofold.train.recipe import recipe_from_dict

    return recipe_from_dict(info["recipe"], info["recipe"]["name"])
