"""Start or resume a member run or a pair run, and what a run starts from.

Member and pair directories are laid out and read by `twofold.train.rundir`. A pair trains the
encoder, then the decoder, with the identical recipe, seed and stores.
"""

from __future__ import annotations

from pathlib import Path

from twofold._version import __version__
from twofold.errors import TwofoldError
from twofold.train.distributed import World, barrier
from twofold.train.loop import Options, Trainer
from twofold.train.recipe import Recipe, recipe_from_dict
from twofold.train.rundir import MEMBERS, PairDir, RunDir


def start(run_dir: str | Path, recipe: Recipe, options: Options, world: World,
          init_from: str | None = None) -> Path:
    """Create a member run (refusing to overwrite one) and train it to the end."""
    run = RunDir(run_dir)
    if options.objective not in MEMBERS.values():
        raise TwofoldError(f"objective {options.objective!r} is unknown; use mlm (encoder) or clm (decoder)")
    taken = RunDir.holds_run(run.path)
    barrier(world)  # every rank looks before rank 0 writes
    if taken:
        raise TwofoldError(f"{run.path} already holds a run; "
                           f"resume it with --resume {run.path} or choose another --out")
    if options.cross and recipe.cross is None:
        raise TwofoldError(f"recipe {recipe.name} has no `cross` phase for --init-from; "
                           "add one or use the ettin recipe")
    model_config, initial = initial_model(recipe, options, init_from)
    if world.main:
        run.write_info({"version": __version__, "recipe": recipe.to_dict(), "options": options.to_dict(),
                        "model": model_config.to_dict(), "init_from": init_from, "world_size": world.world_size})
    barrier(world)
    return Trainer(run, recipe, options, model_config, world, initial).run()


def resume(run_dir: str | Path, world: World, overrides: dict | None = None) -> Path:
    """Continue a member run from its newest intact checkpoint (or from scratch if it has none)."""
    run = RunDir(run_dir)
    saved = run.info
    recipe = recipe_from_dict(saved["recipe"], saved["recipe"]["name"])
    options = Options.from_dict({**saved["options"], **(overrides or {})})
    initial = None
    if saved.get("init_from"):
        _, initial = initial_model(recipe, options, saved["init_from"])
    return Trainer(run, recipe, options, run.config(), world, initial, resume=True).run()


def initial_model(recipe: Recipe, options: Options, init_from: str | None):
    """The model config for this run (the recipe's shape sized for the stores' tokenizer, its
    training dropout and its first phase's RoPE θ), and the weights to start from
    (cross-objective continuation) or None."""
    from twofold.data.sampling import Corpus
    from twofold.data.store import TokenStore
    from twofold.model import preset

    corpus = Corpus([TokenStore(s) for s in options.stores])
    first = recipe.cross if options.cross and recipe.cross is not None else recipe.phases[0]
    shape = preset(recipe.model, causal=options.objective == "clm", **recipe.dropout.model_fields(),
                   global_rope_theta=first.rope_theta_global, local_rope_theta=first.rope_theta_local)
    config = shape.for_tokenizer(corpus.vocab_size, corpus.special_ids)
    if init_from is None:
        return config, None
    source, state = _weights_of(init_from)
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    differ = [f"{k} {getattr(source, k)} vs {getattr(config, k)}"
              for k in keys if getattr(source, k) != getattr(config, k)]
    if differ:
        raise TwofoldError(f"--init-from {init_from} does not fit recipe model {recipe.model}: {', '.join(differ)}; "
                           "choose the recipe size (or --set model=…) that matches it")
    return config, state


def _weights_of(init_from: str):
    """(ModelConfig, state dict) of a run's newest intact checkpoint or of a Hugging Face directory."""
    path = Path(init_from)
    if RunDir.holds_run(path):
        model = RunDir(path).model()
        return model.config, model.state_dict()
    if (path / "config.json").is_file():
        from twofold.hf import load

        model = load(path)
        return model.config, model.state_dict()
    raise TwofoldError(f"--init-from {path}: neither a twofold run nor a Hugging Face model directory")


def start_pair(run_dir: str | Path, recipe: Recipe, options: Options, world: World,
               init_from: dict[str, str] | None = None) -> Path:
    """Train the encoder, then the decoder, with the identical recipe, seed and batch order."""
    pair = PairDir(run_dir)
    taken = PairDir.holds_pair(pair.path) or RunDir.holds_run(pair.path)
    barrier(world)  # every rank looks before rank 0 writes
    if taken:
        raise TwofoldError(f"{pair.path} already holds a run; "
                           f"resume it with --resume {pair.path} or choose another --out")
    init_from = init_from or {}
    if world.main:
        pair.write_info({"version": __version__, "members": list(MEMBERS), "recipe": recipe.to_dict(),
                         "options": options.to_dict(), "init_from": init_from})
    barrier(world)
    return _train_pair(pair, recipe, options, init_from, world)


def resume_any(run_dir: str | Path, world: World, overrides: dict | None = None) -> Path:
    """Resume a member run, or each member of a pair run (starting those not begun).

    `overrides` change how to run (e.g. progress), never what is learnt.
    """
    if not PairDir.holds_pair(run_dir):
        return resume(run_dir, world, overrides)
    pair = PairDir(run_dir)
    recipe = recipe_from_dict(pair.info["recipe"], pair.info["recipe"]["name"])
    options = Options.from_dict({**pair.info["options"], **(overrides or {})})
    return _train_pair(pair, recipe, options, pair.info["init_from"], world, overrides)


def _train_pair(pair: PairDir, recipe: Recipe, options: Options, init_from: dict, world: World,
                overrides: dict | None = None) -> Path:
    for member, objective in MEMBERS.items():
        run = pair.member(member)
        if RunDir.holds_run(run.path):
            resume(run.path, world, overrides)
        else:
            start(run.path, recipe, options.replace(objective=objective), world, init_from.get(member))
    return pair.path
