"""Human views of a recipe: the phase table and a plot of the schedules against tokens."""

from __future__ import annotations

import bisect
import dataclasses
from pathlib import Path

from twofold.files import save_figure
from twofold.train import budget
from twofold.train.recipe import Phase, Recipe, human_tokens
from twofold.train.schedule import lr_at, phase_starts, phase_steps


def _mixture(phase: Phase) -> str:
    mix = phase.mixture
    if mix.top is not None:
        groups = f"top {mix.top}" + (f" with {'+'.join(mix.groups)}" if mix.groups else "")
    elif mix.groups is None:
        groups = "all"
    else:  # a phase may hold 1833 languages: name a few
        groups = "+".join(mix.groups) if len(mix.groups) <= 4 else f"{len(mix.groups)} groups ({mix.groups[0]}…)"
    if mix.boost:
        groups += " boost " + ",".join(f"{k}×{v:g}" for k, v in mix.boost.items())
    if mix.sources:
        groups += " sources " + ",".join(f"{k}:{v:g}" for k, v in mix.sources.items())
    if mix.temperature is not None:
        return f"{groups} τ={mix.temperature:g}"
    if mix.weights is not None:
        return f"{groups} w={','.join(f'{k}:{v:g}' for k, v in mix.weights.items())}"
    return groups


def _dropout(recipe: Recipe) -> str:
    drops = [f"{name.replace('_', '-')} {p:g}" for name, p in dataclasses.asdict(recipe.dropout).items() if p]
    return ", ".join(drops) or "none"


def phase_table(recipe: Recipe) -> str:
    header = ["phase", "tokens", "steps", "seq_len", "batch (seqs)", "peak LR", "LR ×peak", "decay", "wd ×",
              "mask", "θ global/local", "data", "ckpt every", "tag", "seed"]
    rows = [header]
    for phase in recipe.phase.values():
        s = phase.lr_schedule(recipe.optimizer.lr)
        b = phase.batch
        batch = str(b.sequences)
        if b.warms_up:
            ramp = " by steps" if b.ramp == "steps" else ""
            batch = f"{b.start_sequences}→{b.sequences}/{human_tokens(b.warmup_tokens)}{ramp}"
        steps = human_tokens(phase_steps(phase))
        if phase.layout == "documents":  # rows of varying length: the expected count
            steps = f"≈{steps} at {phase.row_tokens:g} tok/row"
        warm = f"warmup {human_tokens(s.warmup_tokens)}, " if s.warmup_tokens else ""
        rows.append([
            phase.name, human_tokens(phase.tokens), _marked(steps, phase), str(phase.seq_len), batch,
            f"{s.peak:.3g}", f"{warm}{s.start_ratio:g}→{s.min_ratio:g}",
            s.decay if s.decay == "none" else f"{s.decay} over {human_tokens(s.decay_tokens)}",
            f"lr/{s.weight_decay_lr:.3g}" + ("" if phase.weight_decay is None else f" (wd {phase.weight_decay:g})"),
            f"{phase.mask_rate:.0%}", f"{phase.rope_theta_global:g}/{phase.rope_theta_local:g}",
            _mixture(phase), human_tokens(phase.checkpoint_every_tokens), f"{phase.tag}N",
            str(recipe.seed if phase.seed is None else phase.seed),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    opt = recipe.optimizer
    title = (f"recipe {recipe.name}" + (f" --size {recipe.size}" if recipe.size else "")
             + (f" --variant {recipe.variant}" if recipe.variant else "")
             + (f" at scale {recipe.scale:g}" if recipe.scale != 1 else "")
             + (f" --batch-scale {recipe.batch_scale:g}" if recipe.batch_scale != 1 else "")
             + f": model {recipe.model}, {opt.name} betas {tuple(opt.betas)} eps {opt.eps:g} "
             f"wd {opt.weight_decay:g}, seed {recipe.seed}, dropout {_dropout(recipe)}")
    notes = ["cross is a separate run (cross-objective continuation from step 0)"] if recipe.cross else []
    if any(p.layout == "documents" for p in recipe.phase.values()):
        notes.append("≈: one document chunk per row (layout documents), so tokens per step vary; the steps "
                      "are those expected at the phase's mean_row_tokens")
    notes += [f"! {problem}" for problem in budget.problems(tuple(recipe.phase.values()))]
    few = [p.name for p in recipe.phase.values() if phase_steps(p) < budget.FEW_STEPS]
    if few:
        notes.append(f"! {', '.join(few)}: under {budget.FEW_STEPS} optimizer steps at this scale; "
                     f"{budget.ways_out(recipe)}")
    return "\n".join([title, "", *lines, *notes])


def _batch_by_tokens(phase: Phase):
    """tokens into the phase → its global batch (sequences); a ramp by steps is walked step by
    step at the phase's tokens per row."""
    batch = phase.batch
    if not (batch.warms_up and batch.ramp == "steps"):
        return batch.sequences_at
    ends, tokens = [], 0.0  # tokens after each ramp step
    for step in range(batch.warmup_steps(phase.seq_len)):
        tokens += batch.sequences_at_step(step, phase.seq_len) * phase.row_tokens
        ends.append(tokens)
    return lambda into: batch.sequences_at_step(bisect.bisect_right(ends, into), phase.seq_len)


def _marked(steps: str, phase: Phase) -> str:
    """The phase's steps, marked `!` when it holds fewer than a few (`<1 !` when not one)."""
    if phase.tokens < budget.first_step_tokens(phase):
        return "<1 !"
    return steps + (" !" if phase_steps(phase) < budget.FEW_STEPS else "")


def plot_recipe(recipe: Recipe, path: str | Path, points: int = 400) -> Path:
    """PNG of LR, batch size, mask rate and seq_len against total tokens, phases shaded."""
    from matplotlib.figure import Figure  # the object API: no global pyplot state
    from matplotlib.ticker import FuncFormatter

    phases = recipe.phases
    starts = phase_starts(phases)
    xs, lrs, batches, masks, seq_lens = [], [], [], [], []
    for phase, start in zip(phases, starts):
        schedule = phase.lr_schedule(recipe.optimizer.lr)
        batch_at = _batch_by_tokens(phase)
        for i in range(points + 1):
            into = phase.tokens * i / points
            xs.append(start + into)
            lrs.append(lr_at(schedule, into))
            batches.append(batch_at(into))
            masks.append(phase.mask_rate)
            seq_lens.append(phase.seq_len)

    figure = Figure(figsize=(9, 9))
    axes = figure.subplots(4, 1, sharex=True)
    series = [(lrs, "learning rate"), (batches, "batch (sequences)"), (masks, "MLM mask rate"),
              (seq_lens, "seq_len")]
    for axis, (values, label) in zip(axes, series):
        axis.plot(xs, values, linewidth=1.5)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        for index, (phase, start) in enumerate(zip(phases, starts)):
            if index % 2:
                axis.axvspan(start, start + phase.tokens, color="grey", alpha=0.1)
    for phase, start in zip(phases, starts):
        axes[0].annotate(phase.name, (start + phase.tokens / 2, 1.02), xycoords=("data", "axes fraction"),
                         ha="center", fontsize=9)
    axes[-1].set_xlabel("tokens seen")
    axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda x, _: human_tokens(x)))
    title = " ".join(["recipe", recipe.name, *filter(None, [recipe.size, recipe.variant])])
    figure.suptitle(title + (f" (scale {recipe.scale:g})" if recipe.scale != 1 else ""))
    figure.tight_layout()
    return save_figure(figure, path, dpi=100)
