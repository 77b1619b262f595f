"""Run directories: start a member or a pair, resume either, and what a run starts from.

A member run is `run.json` (what was asked: recipe, stores, options, model config) plus what
the trainer writes (see `twofold.train.loop`). A pair run is `pair.json` plus `encoder/` and
`decoder/`, two member runs with the identical recipe, seed and stores, trained one after
the other.
"""

from __future__ import annotations

import json
from pathlib import Path

from twofold import __version__
from twofold.config import Recipe, recipe_from_dict
from twofold.errors import TwofoldError
from twofold.train import checkpoint
from twofold.train.distributed import World, barrier
from twofold.train.loop import OBJECTIVES, Options, Trainer

RUN_FILE = "run.json"
PAIR_FILE = "pair.json"
MEMBERS = {"encoder": "mlm", "decoder": "clm"}


def start(run_dir: str | Path, recipe: Recipe, options: Options, world: World,
          init_from: str | None = None) -> Path:
    """Create a member run (refusing to overwrite one) and train it to the end."""
    run_dir = Path(run_dir)
    if options.objective not in OBJECTIVES:
        raise TwofoldError(f"objective {options.objective!r} is unknown; use mlm (encoder) or clm (decoder)")
    taken = (run_dir / RUN_FILE).exists()
    barrier(world)  # every rank looks before rank 0 writes
    if taken:
        raise TwofoldError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or choose another --out")
    if options.cross and recipe.cross is None:
        raise TwofoldError(f"recipe {recipe.name} has no `cross` phase for --init-from; add one or use the ettin recipe")
    model_config, initial = _initial_model(recipe, options, init_from)
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / RUN_FILE, {
            "version": __version__, "recipe": recipe.to_dict(), "options": options.to_dict(),
            "model": model_config.to_dict(), "init_from": init_from, "world_size": world.world_size})
    barrier(world)
    return Trainer(run_dir, recipe, options, model_config, world, initial).run()


def resume(run_dir: str | Path, world: World, overrides: dict | None = None) -> Path:
    """Continue a member run from its newest intact checkpoint (or from scratch if it has none)."""
    run_dir = Path(run_dir)
    saved = read_run(run_dir)
    recipe = recipe_from_dict(saved["recipe"], saved["recipe"]["name"])
    options = Options(**{**saved["options"], "stores": tuple(saved["options"]["stores"]),
                         "eval_stores": tuple(saved["options"]["eval_stores"]), **(overrides or {})})
    from twofold.model import ModelConfig

    model_config = ModelConfig.from_dict(saved["model"])
    initial = None
    if saved.get("init_from"):
        _, initial = _initial_model(recipe, options, saved["init_from"])
    return Trainer(run_dir, recipe, options, model_config, world, initial, resume=True).run()


def read_run(run_dir: str | Path) -> dict:
    run_file = Path(run_dir) / RUN_FILE
    if not run_file.is_file():
        raise TwofoldError(f"{run_dir} is not a training run (no {RUN_FILE}); give the --out of a `twofold train`")
    return json.loads(run_file.read_text())


def _initial_model(recipe: Recipe, options: Options, init_from: str | None):
    """The model config for this run, and weights to start from (cross-objective) or None."""
    from twofold.data.sampling import Corpus
    from twofold.data.store import TokenStore
    from twofold.model import preset
    from twofold.tokenizer import SpecialIds

    causal = OBJECTIVES[options.objective]
    corpus = Corpus([TokenStore(s) for s in options.stores])
    vocab = max(preset(recipe.model).vocab_size, -(-corpus.vocab_size // 64) * 64)
    special = SpecialIds.from_dict(corpus.special_ids)
    config = preset(recipe.model, causal=causal, vocab_size=vocab, **special.config_ids())
    if init_from is None:
        return config, None
    source, state = _weights_of(init_from)
    shape = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    differ = [f"{k} {getattr(source, k)} vs {getattr(config, k)}" for k in shape if getattr(source, k) != getattr(config, k)]
    if differ:
        raise TwofoldError(f"--init-from {init_from} does not fit recipe model {recipe.model}: {', '.join(differ)}; "
                           "choose the recipe size (or --set model=…) that matches it")
    return config, state


def _weights_of(init_from: str):
    """(ModelConfig, state dict) of a run's newest intact checkpoint or of a Hugging Face directory."""
    from twofold.model import ModelConfig, TwofoldModel

    path = Path(init_from)
    if (path / RUN_FILE).is_file() or (path / "checkpoints").is_dir():
        saved = read_run(path)
        model = TwofoldModel(ModelConfig.from_dict(saved["model"]))
        if checkpoint.load_latest(path / "checkpoints", model, restore_rng=False) is None:
            raise TwofoldError(f"--init-from {path}: the run has no checkpoint yet")
        return model.config, model.state_dict()
    if (path / "config.json").is_file():
        import twofold

        model = twofold.load(path)
        return model.config, model.state_dict()
    raise TwofoldError(f"--init-from {path}: neither a twofold run nor a Hugging Face model directory")


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    temporary.replace(path)


def start_pair(run_dir: str | Path, recipe: Recipe, options: Options, world: World,
               init_from: dict[str, str] | None = None) -> Path:
    """Train the encoder, then the decoder, with the identical recipe, seed and batch order."""
    run_dir = Path(run_dir)
    taken = (run_dir / PAIR_FILE).exists() or (run_dir / RUN_FILE).exists()
    barrier(world)  # every rank looks before rank 0 writes
    if taken:
        raise TwofoldError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or choose another --out")
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / PAIR_FILE, {"version": __version__, "members": list(MEMBERS),
                                          "recipe": recipe.to_dict(), "options": options.to_dict(),
                                          "init_from": init_from or {}})
    barrier(world)
    return resume_any(run_dir, world)


def resume_any(run_dir: str | Path, world: World, overrides: dict | None = None) -> Path:
    """Resume a member run, or each member of a pair run (starting those not begun).

    `overrides` change how to run (e.g. progress), never what is learnt.
    """
    run_dir = Path(run_dir)
    if not (run_dir / PAIR_FILE).is_file():
        return resume(run_dir, world, overrides)
    pair = json.loads((run_dir / PAIR_FILE).read_text())
    recipe = recipe_from_dict(pair["recipe"], pair["recipe"]["name"])
    for member, objective in MEMBERS.items():
        member_dir = run_dir / member
        if (member_dir / RUN_FILE).is_file():
            resume(member_dir, world, overrides)
        else:
            saved = pair["options"]
            options = Options(**{**saved, "stores": tuple(saved["stores"]), "eval_stores": tuple(saved["eval_stores"]),
                                 "objective": objective, **(overrides or {})})
            start(member_dir, recipe, options, world, pair["init_from"].get(member))
    return run_dir
