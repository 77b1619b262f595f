"""`twofold recipe show NAME`: the phase table of a recipe and a PNG of its schedules."""

from __future__ import annotations

import argparse

from twofold.commands import POSITIVE, token_count
from twofold.train.recipe import load_recipe, preset_names

# Their destinations and flags; every one is None or [] unless given (a command that does not read
# them in some case can so tell a flag given with its default value from one left out).
RECIPE_FLAGS = {"size": "--size", "variant": "--variant", "scale": "--scale", "budget": "--budget",
                "batch_scale": "--batch-scale", "overrides": "--set"}


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """--size / --variant / --scale / --budget / --batch-scale / --set, shared with `twofold train`."""
    parser.add_argument("--size", help="model size of the recipe, e.g. 17m … 1b (ettin), small/base (mmbert)")
    parser.add_argument("--variant", help="a named variant of the recipe, e.g. mmbert's decay mixtures eng, cont, all")
    parser.add_argument("--scale", type=POSITIVE,
                        help="multiply every token count (budgets, warmups, checkpoint intervals) by this factor "
                             "(default 1)")
    parser.add_argument("--budget", type=token_count, default=None,
                        help="total tokens of the run's phases (e.g. 20M); sets the scale (so not with --scale)")
    parser.add_argument("--batch-scale", type=POSITIVE,
                        help="multiply every phase's batch size by this factor (warmups stay in tokens), e.g. to "
                             "keep whole steps inside a small --budget (default 1)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. phase.decay.lr_min_ratio=0.02 (repeatable)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("recipe", help="inspect training recipes")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print a recipe's phase table and plot its schedules")
    show.add_argument("name", help=f"a preset ({', '.join(preset_names())}) or a recipe .yaml path")
    add_recipe_arguments(show)
    show.add_argument("--out", default=None, help="PNG path for the schedule plot (default: recipe-NAME[-SIZE].png)")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    from twofold.train.show import phase_table, plot_recipe

    recipe = load_recipe(args.name, size=args.size, overrides=args.overrides, scale=args.scale,
                         budget=args.budget, variant=args.variant, batch_scale=args.batch_scale)
    print(phase_table(recipe))
    out = args.out or "-".join(["recipe", recipe.name, *filter(None, [recipe.size, recipe.variant])]) + ".png"
    print(f"schedule plot: {plot_recipe(recipe, out)}")
    return 0
