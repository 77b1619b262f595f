"""`twofold train` (a member or a pair, fresh or resumed, on one process or under torchrun)
and `twofold export` (a checkpoint in the Hugging Face format)."""

from __future__ import annotations

import argparse

from twofold.commands import at_least, given, token_count
from twofold.commands.recipe import RECIPE_FLAGS, add_recipe_arguments
from twofold.errors import TwofoldError


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train an encoder, a decoder, or the pair with one recipe",
        description="Train with a recipe. Under torchrun every rank runs this same command.")
    train.add_argument("--recipe", help="preset (ettin, mmbert, demo) or recipe .yaml")
    add_recipe_arguments(train)
    train.add_argument("--store", action="append", default=[], help="token store to train on (repeatable)")
    train.add_argument("--out", help="run directory to create")
    who = train.add_mutually_exclusive_group()
    who.add_argument("--pair", action="store_true", default=None,
                     help="train the encoder and then the decoder (OUT/encoder, OUT/decoder)")
    who.add_argument("--objective", choices=["mlm", "clm"], help="one member: mlm (encoder) or clm (decoder)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (member or pair)")
    train.add_argument("--reseed-rng", action="store_true",
                       help="with --resume on another number of ranks in the middle of a phase with dropout: "
                            "go on with fresh per-rank random streams (refused otherwise: they cannot be split)")
    start = train.add_mutually_exclusive_group()
    start.add_argument("--init-from", metavar="MODEL",
                       help="start from these weights only (a Hugging Face directory, a run, or RUN@TAG; fresh "
                            "optimizer): with --phase, that phase and the ones after; alone, the recipe's cross phase "
                            "(cross-objective continuation)")
    start.add_argument("--branch-from", metavar="RUN_DIR",
                       help="start where RUN_DIR ended the phases this recipe shares with it (its checkpoint: "
                            "weights, optimizer, data position) and train the rest, e.g. an mmbert --variant's "
                            "decay from one mid-training run")
    train.add_argument("--phase", metavar="NAME",
                       help="start at this phase of the recipe (e.g. decay) and run it and the ones after, with that "
                            "phase's schedule from its first step; with --init-from: continue a released model")
    train.add_argument("--order", metavar="DIR",
                       help="replay a published batch order (Parquet files with input_ids and step columns, e.g. "
                            "jhu-clsp/ettin-data-order): the first phase run trains step by step on exactly its rows")
    train.add_argument("--eval-store", action="append", default=[], help="held-out token store (repeatable)")
    train.add_argument("--eval-every", type=token_count, help="held-out loss every N tokens (default: at checkpoints)")
    train.add_argument("--eval-sequences", type=at_least(1), help="sequences in the held-out set (default 32)")
    train.add_argument("--micro-batch", type=at_least(1),
                       help="sequences per forward pass on each rank (gradient accumulation)")
    train.add_argument("--keep-last", type=at_least(1),
                       help="newest checkpoints to keep (tagged ones are always kept; default 2)")
    train.add_argument("--save-every-steps", type=at_least(1), help="also checkpoint every N steps (for resume)")
    train.add_argument("--parallel", choices=["ddp", "fsdp"], help="data parallelism under torchrun (default ddp)")
    train.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                       help="auto (default): bf16 autocast on a GPU that has it, else fp32")
    train.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="torch.compile the model (default: on where a varlen attention kernel serves, i.e. on a "
                            "GPU in bf16: fixed shapes, one graph; --no-compile for eager steps)")
    train.add_argument("--log-every", type=at_least(1), metavar="STEPS",
                       help="read loss and gradient norm from the device every STEPS steps (default: 1 on the CPU, "
                            "10 on a GPU, where a read waits for the device); every step is still recorded")
    train.add_argument("--workers", type=at_least(0),
                       help="DataLoader worker processes building batches (default 0: in the training process)")
    train.add_argument("--device", help="cpu, cuda, cuda:1 … (default: the local GPU if any)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--tensorboard", action="store_true", default=None,
                       help="also log the metrics for TensorBoard (RUN/tensorboard; needs the tensorboard package)")
    train.set_defaults(func=run_train)

    export = subparsers.add_parser("export", help="write a run's checkpoint in the Hugging Face format")
    export.add_argument("run_dir", help="a member run, or a pair run with --member")
    export.add_argument("--tag", help="checkpoint tag: a phase prefix and that phase's optimizer steps, "
                                      "e.g. step599525 or decay1356 (default: the newest)")
    export.add_argument("--member", choices=["encoder", "decoder"], help="which member of a pair run")
    export.add_argument("--out", required=True, help="directory to write (new or empty)")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    export.set_defaults(func=run_export)


def run_train(args: argparse.Namespace) -> int:
    from twofold.train import runs
    from twofold.train.loop import Options

    if args.resume:
        fixed = given(args, FIXED_AT_START)
        if fixed:
            raise TwofoldError(f"--resume continues a run as it was started, so {fixed[0]} would change nothing; "
                               f"drop {'/'.join(fixed)}")
        overrides = {"progress": not args.no_progress, "reseed_rng": args.reseed_rng}
        return _in_world(args.device, lambda world: runs.resume_any(args.resume, world, overrides))
    if args.reseed_rng:
        raise TwofoldError("--reseed-rng only applies to --resume RUN_DIR")
    for flag, value in (("--recipe", args.recipe), ("--store", args.store), ("--out", args.out)):
        if not value:
            raise TwofoldError(f"train needs {flag} (or --resume RUN_DIR)")
    _check_run_out(args.out)
    if not args.pair and not args.objective:
        raise TwofoldError("train needs --pair, or --objective mlm (encoder) / clm (decoder)")
    if args.pair and args.init_from:
        raise TwofoldError("--init-from continues one model; give --objective mlm or clm, not --pair")
    if args.order and args.branch_from:
        raise TwofoldError("--order replays the first phase a run trains; a branch continues a trunk's: drop one")
    if args.phase and args.branch_from:
        raise TwofoldError("--branch-from starts where the trunk's shared phases end; drop --phase")
    if args.pair and args.branch_from:
        raise TwofoldError("--branch-from continues one member run; give --objective and a member run "
                           "(e.g. --branch-from PAIR/encoder), not --pair")
    from twofold.models import HF, RUN, resolve
    from twofold.train import budget
    from twofold.train.loop import first_phase_index
    from twofold.train.recipe import CROSS, load_recipe

    if args.init_from:  # named as every command names a model: an HF directory, a run or RUN@TAG
        resolve(args.init_from, "--init-from", accept=(HF, RUN))

    recipe = load_recipe(args.recipe, size=args.size, overrides=args.overrides, scale=args.scale,
                         budget=args.budget, variant=args.variant, batch_scale=args.batch_scale)
    cross = args.phase == CROSS or (args.init_from is not None and args.phase is None)
    chosen = dict(  # None: Options' default
        stores=tuple(args.store), objective=args.objective, eval_stores=tuple(args.eval_store),
        eval_every_tokens=args.eval_every, eval_sequences=args.eval_sequences,
        micro_batch_sequences=args.micro_batch, keep_last=args.keep_last,
        save_every_steps=args.save_every_steps, parallel=args.parallel, precision=args.precision,
        compile=args.compile, log_every_steps=args.log_every, progress=not args.no_progress, cross=cross,
        first_phase=None if cross else args.phase, order=args.order, num_workers=args.workers,
        tensorboard=args.tensorboard)
    options = Options(**{name: value for name, value in chosen.items() if value is not None})
    start = first_phase_index(recipe, options)  # a phase the recipe lacks: refused before anything is written
    phases = (recipe.cross,) if cross else recipe.phases[start:]
    budget.check(recipe, phases[1:] if args.order else phases)  # a replayed order sets its own steps
    if args.pair:
        return _in_world(args.device, lambda world: runs.start_pair(args.out, recipe, options, world))
    if args.branch_from:
        return _in_world(args.device, lambda world: runs.branch(args.out, recipe, options, world, args.branch_from))
    return _in_world(args.device, lambda world: runs.start(args.out, recipe, options, world,
                                                           init_from=args.init_from))


# What a run records when it starts (what it learns, on what, how it is batched, saved and run):
# a resume reads it from the run, so each of these flags, given at all (even with its default
# value), is refused rather than ignored. A resume reads only --device, --no-progress, --reseed-rng.
FIXED_AT_START = {
    "recipe": "--recipe", **RECIPE_FLAGS, "store": "--store", "out": "--out", "pair": "--pair",
    "objective": "--objective", "init_from": "--init-from", "branch_from": "--branch-from", "phase": "--phase",
    "order": "--order", "eval_store": "--eval-store", "eval_every": "--eval-every",
    "eval_sequences": "--eval-sequences", "micro_batch": "--micro-batch", "keep_last": "--keep-last",
    "save_every_steps": "--save-every-steps", "parallel": "--parallel", "precision": "--precision",
    "compile": "--compile/--no-compile", "log_every": "--log-every", "workers": "--workers",
    "tensorboard": "--tensorboard"}


def _check_run_out(out: str) -> None:
    """Before any rank joins (so before any writes): a new or empty folder, never a file or a run."""
    from twofold.files import check_out
    from twofold.train.rundir import PairDir, RunDir

    check_out(out, "run", holds=lambda path: RunDir.holds_run(path) or PairDir.holds_pair(path),
              taken=f"resume it with --resume {out} or choose another --out")


def _in_world(device: str | None, train) -> int:
    """Join torchrun's process group (or a world of one), train, leave; rank 0 says where."""
    from twofold.train.distributed import join, leave

    world = join(device)
    try:
        path = train(world)
    finally:
        leave()
    if world.main:
        print(f"run complete: {path}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from twofold.train.rundir import member_run

    run = member_run(args.run_dir, args.member)
    print(f"exported: {run.export(args.out, args.tag, overwrite=args.overwrite)}")
    return 0
