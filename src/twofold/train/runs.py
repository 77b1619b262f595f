"""Start or resume a member run or a pair run, and what a run starts from.

Member and pair directories are laid out and read by `twofold.train.rundir`. A pair trains the
encoder, then the decoder, with the identical recipe, seed and stores.

A *branch* is a member run that shares its first phases with another run (the trunk) and
differs after them, as mmBERT's decay variants share pretraining and mid-training: it starts
from the trunk's checkpoint at the end of the last shared phase (weights, optimizer, data
position, RNG: exactly where the trunk stood) and trains the rest of its own recipe.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from twofold._version import __version__
from twofold.errors import TwofoldError
from twofold.train import checkpoint
from twofold.train.distributed import World, barrier
from twofold.train.loop import Options, Trainer, check_micro_batch, first_phase_index
from twofold.train.recipe import Recipe
from twofold.train.rundir import MEMBERS, PairDir, RunDir


def start(run_dir: str | Path, recipe: Recipe, options: Options, world: World,
          init_from: str | None = None) -> Path:
    """Create a member run (refusing to overwrite one) and train it to the end."""
    run = RunDir(run_dir)
    init_from = str(Path(init_from).resolve()) if init_from else None
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
    if options.order:  # every row fits the tokenizer and the phase, before anything is written
        from twofold.data.replay import PublishedOrder
        from twofold.data.sampling import Corpus
        from twofold.data.store import TokenStore

        first = recipe.cross if options.cross else recipe.phases[first_phase_index(recipe, options)]
        vocab_size = Corpus([TokenStore(s) for s in options.stores]).vocab_size
        PublishedOrder(options.order).check(vocab_size, first.seq_len)
    check_micro_batch(recipe, options, model_config, world)
    if world.main:
        run.write_info({"version": __version__, "recipe": recipe.to_dict(), "options": options.to_dict(),
                        "model": model_config.to_dict(), "init_from": init_from, "world_size": world.world_size})
    barrier(world)
    return Trainer(run, recipe, options, model_config=model_config, world=world, initial=initial).run()


def branch(run_dir: str | Path, recipe: Recipe, options: Options, world: World, trunk_dir: str | Path) -> Path:
    """Create a member run that continues `trunk_dir` after the phases their recipes share."""
    run, trunk = RunDir(run_dir), RunDir(trunk_dir)
    taken = RunDir.holds_run(run.path)
    barrier(world)
    if taken:
        raise TwofoldError(f"{run.path} already holds a run; "
                           f"resume it with --resume {run.path} or choose another --out")
    if not RunDir.holds_run(trunk.path):
        raise TwofoldError(f"--branch-from {trunk.path}: not a member run (no run.json); give the run whose "
                           "checkpoint the branch starts from, e.g. RUN or PAIR/encoder")
    trunk_recipe, trunk_options = trunk.recipe, _saved_options(trunk.info)
    model_config, _ = initial_model(recipe, options, None)
    different = [what for what, mine, theirs in (
        ("model", model_config, trunk.config()), ("optimizer", recipe.optimizer, trunk_recipe.optimizer),
        ("seed", recipe.seed, trunk_recipe.seed), ("objective", options.objective, trunk_options.objective),
        ("stores", options.stores, trunk_options.stores)) if mine != theirs]
    if different:
        raise TwofoldError(f"--branch-from {trunk.path}: its {', '.join(different)} differ from this run's; "
                           "a branch continues the trunk, so give the same recipe, size, stores and objective")
    shared = 0
    for mine, theirs in zip(recipe.phases, trunk_recipe.phases):
        if mine != theirs:
            break
        shared += 1
    if shared == 0 or shared == len(recipe.phases):
        what = "no phase" if shared == 0 else "every phase"
        raise TwofoldError(f"--branch-from {trunk.path}: this recipe shares {what} with the trunk's; a branch "
                           "shares the first phases and changes a later one (e.g. --variant)")
    last = recipe.phases[shared - 1]
    start_point = _phase_end(trunk, shared - 1, last.tokens)
    if world.main:
        run.write_info({"version": __version__, "recipe": recipe.to_dict(), "options": options.to_dict(),
                        "model": model_config.to_dict(), "init_from": None, "world_size": world.world_size,
                        "branched_from": {"run": str(trunk.path.resolve()), "checkpoint": start_point.name,
                                          "shared_phases": [p.name for p in recipe.phases[:shared]],
                                          "model_sha256": _checksums(start_point)["model.safetensors"]}})
        _link_tree(start_point, run.checkpoints_dir / start_point.name)
        for phase in recipe.phases[:shared]:  # the batch order of the shared phases is the branch's too
            if trunk.phase_dir(phase.name).is_dir():
                _link_tree(trunk.phase_dir(phase.name), run.phase_dir(phase.name))
    barrier(world)
    return Trainer(run, recipe, options, model_config=model_config, world=world, resume=True).run()


def _phase_end(trunk: RunDir, index: int, tokens: int) -> Path:
    """The trunk's checkpoint written by the step that ended phase `index`."""
    for path in reversed(trunk.checkpoints()):
        progress = checkpoint.read_state(path)["progress"]
        if progress["phase_index"] == index and progress["phase_tokens"] >= tokens:
            checkpoint.verify(path)
            return path
    raise TwofoldError(f"--branch-from {trunk.path}: no checkpoint ends its phase {index + 1} yet; "
                       "train (or resume) the trunk past it first")


def _checksums(path: Path) -> dict:
    import json

    return json.loads((path / checkpoint.CHECKSUMS).read_text())


def _link_tree(source: Path, target: Path) -> None:
    """Hard links (checkpoints and finished order logs are never written again), copies across devices."""
    for file in sorted(source.rglob("*")):
        destination = target / file.relative_to(source)
        if file.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, destination)
        except OSError:
            shutil.copy2(file, destination)


def resume(run_dir: str | Path, world: World, overrides: dict | None = None) -> Path:
    """Continue a member run from its newest intact checkpoint (or from scratch if it has none)."""
    run = RunDir(run_dir)
    recipe, options, init_from = run.recipe, _saved_options(run.info, overrides), run.info.get("init_from")
    # The weights it started from matter only before its first checkpoint (their source may be gone since).
    started = init_from and not checkpoint.list_checkpoints(run.checkpoints_dir)
    initial = initial_model(recipe, options, init_from)[1] if started else None
    return Trainer(run, recipe, options, model_config=run.config(), world=world, initial=initial, resume=True).run()


def initial_model(recipe: Recipe, options: Options, init_from: str | None):
    """The model config for this run (the recipe's shape sized for the stores' tokenizer, its
    training dropout and its first phase's RoPE θ), and the weights to start from (a
    cross-objective continuation, or any phase continued from another model) or None."""
    from twofold.data.sampling import Corpus
    from twofold.data.store import TokenStore
    from twofold.model import preset

    corpus = Corpus([TokenStore(s) for s in options.stores])
    start = first_phase_index(recipe, options)
    recipe.check_groups(corpus.group_tokens, cross=options.cross, first=start)  # before anything is written
    first = recipe.cross if options.cross and recipe.cross is not None else recipe.phases[start]
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
    """(ModelConfig, state dict) of a Hugging Face directory, a run's newest intact checkpoint,
    or `RUN@TAG`, the run's checkpoint with that tag (e.g. `runs/enc@ext50854`)."""
    path = Path(init_from)
    run, at, tag = init_from.rpartition("@")
    if at and RunDir.holds_run(run):
        model = RunDir(run).model(tag)
    elif RunDir.holds_run(path):
        model = RunDir(path).model()
    elif (path / "config.json").is_file():
        from twofold.hf import load

        model = load(path)
    else:
        raise TwofoldError(f"--init-from {path}: neither a twofold run nor a Hugging Face model directory; "
                           "give a run, RUN@TAG (a tagged checkpoint of it) or a Hugging Face directory")
    return model.config, model.state_dict()


def start_pair(run_dir: str | Path, recipe: Recipe, options: Options, world: World,
               init_from: dict[str, str] | None = None) -> Path:
    """Train the encoder, then the decoder, with the identical recipe, seed and batch order."""
    pair = create_pair(run_dir, recipe, options, world, init_from)
    return _train_pair(pair, recipe, options, init_from or {}, world)


def create_pair(run_dir: str | Path, recipe: Recipe, options: Options, world: World,
                init_from: dict[str, str] | None = None) -> PairDir:
    """A new pair run with nothing trained yet (refusing to overwrite a run); `_train_pair`, or
    `start` on each member (`pair.member(name)`) with its objective, trains it."""
    pair = PairDir(run_dir)
    taken = PairDir.holds_pair(pair.path) or RunDir.holds_run(pair.path)
    barrier(world)  # every rank looks before rank 0 writes
    if taken:
        raise TwofoldError(f"{pair.path} already holds a run; "
                           f"resume it with --resume {pair.path} or choose another --out")
    for objective in MEMBERS.values():  # before anything is written
        check_micro_batch(recipe, options, initial_model(recipe, options.replace(objective=objective), None)[0], world)
    if world.main:
        pair.write_info({"version": __version__, "members": list(MEMBERS), "recipe": recipe.to_dict(),
                         "options": options.to_dict(), "init_from": init_from or {}})
    barrier(world)
    return pair


def resume_any(run_dir: str | Path, world: World, overrides: dict | None = None) -> Path:
    """Resume a member run, or each member of a pair run (starting those not begun).

    `overrides` change how to run (e.g. progress), never what is learnt.
    """
    if not PairDir.holds_pair(run_dir):
        return resume(run_dir, world, overrides)
    pair = PairDir(run_dir)
    return _train_pair(pair, pair.recipe, _saved_options(pair.info, overrides), pair.info["init_from"], world,
                       overrides)


def _train_pair(pair: PairDir, recipe: Recipe, options: Options, init_from: dict, world: World,
                overrides: dict | None = None) -> Path:
    for member, objective in MEMBERS.items():
        run = pair.member(member)
        if RunDir.holds_run(run.path):
            resume(run.path, world, overrides)
        else:
            start(run.path, recipe, options.replace(objective=objective), world, init_from.get(member))
    return pair.path


def _saved_options(info: dict, overrides: dict | None = None) -> Options:
    """A run's or pair's options as saved, with `overrides` of how to run (never of what is learnt)."""
    return Options.from_dict({**info["options"], **(overrides or {})})
