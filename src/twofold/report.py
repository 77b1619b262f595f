"""Tables and plots of evaluation results side by side.

Rows are (task[variant], metric), columns are models (`name@checkpoint` for checkpoints).
The `best` column names the winner of each row (lowest perplexity, highest anything else),
so a reader sees at once where the encoder wins and where the decoder does.
Plots (PNG, matplotlib's object API, no display needed):
- `scores.png`: a bar per model for every score;
- `vs-parameters.png`: score against parameter count, one line per kind, when sizes differ;
- `vs-tokens.png`: score against training tokens, one line per model, for checkpoints;
- `ettin.png`: the Ettin paper's figure for suite results — each task family's score against
  parameters, encoder against decoder, one panel per family.
Tasks that failed are listed with their error under the table.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from twofold.files import atomic_write_text, save_figure
from twofold.results import LOWER_IS_BETTER, Result

if TYPE_CHECKING:
    from twofold.train.rundir import RunDir

KIND_COLOURS = {"encoder": "tab:blue", "decoder": "tab:orange", "baseline": "tab:gray"}
# cross-objective continuations, by the kind they became: never a member's colour
CROSS_COLOURS = {"encoder": "tab:green", "decoder": "tab:purple"}


@dataclass
class Row:
    task: str  # task[variant]
    metric: str
    values: dict[str, float]  # column -> value

    @property
    def best(self) -> str:
        if len(self.values) < 2:
            return ""
        pick = min if self.metric in LOWER_IS_BETTER else max
        top = pick(self.values.values())
        winners = [column for column, value in self.values.items() if value == top]
        return winners[0] if len(winners) == 1 else "tie"

    @property
    def label(self) -> str:
        arrow = "↓" if self.metric in LOWER_IS_BETTER else "↑"
        return f"{self.task} {self.metric} {arrow}"


def columns(results: list[Result]) -> list[str]:
    return list(dict.fromkeys(r.column for r in results if r.metrics))


def rows(results: list[Result]) -> list[Row]:
    """One row per (task[variant], metric); a task's rows together, tasks in order of appearance."""
    table: dict[tuple[str, str], dict[str, float]] = {}
    for result in results:
        for metric, value in result.metrics.items():
            table.setdefault((result.row, metric), {})[result.column] = value
    task_order = list(dict.fromkeys(r.task for r in results))
    task_of = {r.row: r.task for r in results}
    order = sorted(table, key=lambda key: (task_order.index(task_of[key[0]]), key[0]))
    return [Row(task, metric, table[task, metric]) for task, metric in order]


def _format(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _cells(results: list[Result]) -> list[list[str]]:
    names = columns(results)
    header = ["task", "metric", *names, "best"]
    body = [[row.task, row.metric, *(_format(row.values.get(n)) for n in names), row.best]
            for row in rows(results)]
    return [header, *body]


def terminal_table(results: list[Result]) -> str:
    cells = _cells(results)
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: list[Result]) -> str:
    cells = _cells(results)
    align = ["---", "---"] + ["---:"] * (len(cells[0]) - 3) + ["---"]
    return "\n".join("| " + " | ".join(line) + " |" for line in [cells[0], align, *cells[1:]])


def models_markdown(results: list[Result]) -> str:
    """One line per model: kind, parameters, checkpoint and tokens."""
    seen = {}
    for r in results:
        seen.setdefault(r.column, r)
    lines = ["| model | kind | parameters | training tokens |", "|---|---|---:|---:|"]
    for column, r in seen.items():
        tokens = "–" if r.tokens is None else f"{r.tokens:,}"
        lines.append(f"| {column} | {r.kind} | {r.parameters / 1e6:.2f}M | {tokens} |")
    return "\n".join(lines)


def samples_markdown(results: list[Result]) -> str:
    """Prompts and outputs as Python literals, so newlines and spaces show."""
    parts = []
    for result in results:
        decoding = result.details.get("decoding")
        if decoding and result.details.get("samples"):
            parts.append(f"- **{result.column}** continuations, {_decoding_text(decoding)}")
        for sample in result.details.get("samples", []):
            output = sample["output"]
            if isinstance(output, list):  # fill-mask guesses
                shown = ", ".join(f"`{g['token']!r}` {g['score']:.3f}" for g in output)
            else:
                shown = f"`{output!r}`"
            parts.append(f"- **{result.column}** `{sample['prompt']!r}` → {shown}")
    return "\n".join(parts)


def _decoding_text(decoding: dict) -> str:
    """How continuations were decoded, from the settings a result recorded."""
    most = f"at most {decoding['max_new_tokens']} new tokens" if "max_new_tokens" in decoding else ""
    if not decoding.get("do_sample"):
        return ", ".join(filter(None, ("greedy", most)))
    return ", ".join(filter(None, (f"sampled: temperature {decoding.get('temperature', 1.0)}",
                                   f"top-p {decoding.get('top_p', 1.0)}", f"seed {decoding.get('seed')}", most)))


def _panels(count: int, width: float = 4.0, height: float = 3.2):
    cols = min(count, 4)
    grid = math.ceil(count / cols)
    figure = Figure(figsize=(width * cols, height * grid), layout="constrained")
    axes = figure.subplots(grid, cols, squeeze=False).flatten()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes


def plot_scores(results: list[Result], path: str | Path) -> Path:
    """A bar per model for every score, coloured by kind (encoder / decoder)."""
    table = rows(results)
    kinds = {r.column: r.kind for r in results}
    figure, axes = _panels(max(len(table), 1))
    for ax, row in zip(axes, table):
        names = list(row.values)
        values = [row.values[n] for n in names]
        bars = ax.bar(range(len(names)), values, color=[KIND_COLOURS.get(kinds[n], "tab:gray") for n in names])
        ax.bar_label(bars, labels=[_format(v) for v in values], fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.set_title(row.label, fontsize=9)
        if min(values) >= 0:  # bars grow from zero, with room for their labels
            ax.set_ylim(0, max(values) * 1.15 or 1)
    figure.suptitle("Evaluation scores (blue: encoder, orange: decoder)")
    return save_figure(figure, path)


def line_name(result: Result, x: str) -> str:
    """Which line a point joins: against tokens, its model's checkpoints; against parameters,
    models of one role across sizes (`17m/encoder`, `32m/encoder` -> `encoder`)."""
    return result.model if x == "tokens" else result.model.rsplit("/", 1)[-1]


def plot_against(results: list[Result], path: str | Path, x: str) -> Path:
    """Score against `parameters` or training `tokens`, a line per `line_name`."""
    table = rows(results)
    by_column = {r.column: r for r in results}
    figure, axes = _panels(max(len(table), 1))
    for ax, row in zip(axes, table):
        lines = defaultdict(list)
        for column, value in row.values.items():
            r = by_column[column]
            position = r.parameters if x == "parameters" else r.tokens
            if position is not None:
                lines[line_name(r, x), r.kind].append((position, value))
        if x == "parameters" and all(len(points) == 1 for points in lines.values()):
            by_kind = defaultdict(list)  # every model its own name: join them by kind instead
            for (_, kind), points in lines.items():
                by_kind[kind, kind] += points
            lines = by_kind
        for (name, kind), points in sorted(lines.items()):
            points.sort()
            variant = name != kind  # e.g. encoder-from-decoder: its kind's colour, dashed
            ax.plot([p for p, _ in points], [v for _, v in points], marker="o", label=name,
                    color=KIND_COLOURS.get(kind), linestyle="--" if variant else "-")
        ax.set_xscale("log")
        ax.set_xlabel("parameters" if x == "parameters" else "training tokens")
        ax.set_title(row.label, fontsize=9)
        ax.legend(fontsize=7)
    return save_figure(figure, path)


def plot_training(runs: dict[str, RunDir], path: str | Path, starts: dict[str, int] | None = None,
                  kinds: dict[str, str] | None = None) -> Path:
    """`training_figure` as a PNG."""
    return save_figure(training_figure(runs, starts, kinds), path)


def training_figure(runs: dict[str, RunDir], starts: dict[str, int] | None = None,
                    kinds: dict[str, str] | None = None) -> Figure:
    """Training loss (and held-out loss) of several runs against tokens, phases marked.

    `starts`: where a run's first token sits on the axis (a continuation starts where the run it
    continues ended, so its curve follows that one's); `kinds`: each run's kind (encoder /
    decoder) for its colour, when its name is not a kind. The raw per-step loss is drawn faint
    under a moving average, which shows the trend the noisy steps hide."""
    starts, kinds = starts or {}, kinds or {}
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    ax = figure.subplots()
    phase_starts: set[tuple[str, int]] = set()
    for name, run in runs.items():
        offset = starts.get(name, 0)
        records = run.metrics()
        steps = [r for r in records if "loss" in r]
        held_out = [r for r in records if "eval_loss" in r]
        colour = colour_of(name, kinds.get(name, name))
        tokens = [offset + r["tokens"] for r in steps]
        losses = [r["loss"] for r in steps]
        ax.plot(tokens, losses, color=colour, alpha=0.2, linewidth=0.6)
        ax.plot(tokens, moving_average(losses, max(5, len(losses) // 40)), color=colour, linewidth=1.6,
                label=f"{name} (train, moving average)")
        if held_out:
            ax.plot([offset + r["tokens"] for r in held_out], [r["eval_loss"] for r in held_out], color=colour,
                    marker="o", linestyle=":", label=f"{name} (held-out)")
        for r in steps:  # a phase starts where its first step's tokens begin
            phase_starts.add((r["phase"], offset + r["tokens"] - r.get("phase_tokens", 0)))
    for level, (phase, start) in enumerate(sorted(phase_starts, key=lambda p: p[1])):
        ax.axvline(start, color="grey", linewidth=0.8, linestyle="--")
        # labels alternate between two heights: phases that start close together stay readable
        ax.annotate(phase, (start, 1.01 + 0.05 * (level % 2)), xycoords=("data", "axes fraction"), fontsize=8)
    ax.set_xlabel("training tokens (a continuation from where the run it continues ended)")
    ax.set_ylabel("loss (MLM for encoders, CLM for decoders)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the curves, never over them
    return figure


def moving_average(values: list[float], window: int) -> list[float]:
    """The mean of each value and the `window - 1` before it (fewer at the start)."""
    sums = [0.0]
    for value in values:
        sums.append(sums[-1] + value)
    return [(sums[i + 1] - sums[max(0, i + 1 - window)]) / min(i + 1, window) for i in range(len(values))]


def plot_families(results: list[Result], path: str | Path) -> Path:
    """The Ettin figure: per task family (`ettin/*` results), score against parameters, a line per kind."""
    families = [r for r in results if r.suite == "ettin" and r.metrics]
    names = list(dict.fromkeys(r.task for r in families))
    figure, axes = _panels(max(len(names), 1))
    for ax, task in zip(axes, names):
        lines = defaultdict(list)
        for r in families:
            if r.task == task:
                lines[r.kind].append((r.parameters, r.metrics["score"]))
        for kind, points in sorted(lines.items()):
            points.sort()
            ax.plot([p for p, _ in points], [v for _, v in points], marker="o", label=kind,
                    color=KIND_COLOURS.get(kind))
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_title(next(r.details.get("family", task) for r in families if r.task == task), fontsize=9)
        ax.legend(fontsize=7)
    figure.suptitle("Encoder vs decoder by size (the Ettin protocol)")
    return save_figure(figure, path)


def provenance_markdown(results: list[Result]) -> str:
    """Where each suite task's scores come from: the library and version, the data's revision or checksums."""
    seen = {}
    for r in results:
        if r.suite and r.library:
            seen.setdefault(r.task, r)
    if not seen:
        return ""
    lines = ["| task | library | data |", "|---|---|---|"]
    for task, r in seen.items():
        data = r.data
        if "sha256" in data:
            digest = hashlib.sha256("".join(f"{k}{v}" for k, v in sorted(data["sha256"].items())).encode())
            digest = digest.hexdigest()[:12]
            where = f"local {data.get('path', '')} ({len(data['sha256'])} files, sha256 of all: {digest})"
        elif data.get("dataset"):
            config = f"/{data['config']}" if data.get("config") else ""
            where = f"{data['dataset']}{config} @ {data.get('revision', '')}"
        else:
            where = "–"
        lines.append(f"| {task} | {r.library} {r.library_version} | {where} |")
    return "\n".join(lines)


def failures_markdown(results: list[Result]) -> str:
    """One line per task that failed, with its error."""
    return "\n".join(f"- **{r.column}** `{r.task}`: {r.error}" for r in results if r.error)


def plots(results: list[Result], out_dir: str | Path) -> list[Path]:
    """Every plot the results support: scores always; parameters when sizes differ; tokens for checkpoints."""
    out_dir = Path(out_dir)
    scored = [r for r in results if r.metrics]
    if not scored:
        return []
    made = [plot_scores(scored, out_dir / "scores.png")]
    if len({r.parameters for r in scored}) > 1:
        made.append(plot_against(scored, out_dir / "vs-parameters.png", "parameters"))
    if any(r.tokens is not None for r in scored):
        made.append(plot_against(scored, out_dir / "vs-tokens.png", "tokens"))
    if any(r.suite == "ettin" for r in scored):
        made.append(plot_families(scored, out_dir / "ettin.png"))
    return made


def write_report(results: list[Result], out_dir: str | Path, title: str = "Evaluation",
                 sections: list[str] = ()) -> Path:
    """`report.md` with the models, the table, every plot, the samples, and any extra `sections` (markdown)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", models_markdown(results), "## Scores", markdown_table(results),
             "`best`: the winner of each row (↓ lower is better, ↑ higher). "
             "Seeds: " + ", ".join(sorted({str(r.seed) for r in results})) + "."]
    failed = failures_markdown(results)
    if failed:
        parts += ["Tasks that failed (their error; the other tasks ran):", failed]
    parts += [f"![{p.stem}]({p.name})" for p in plots(results, out_dir)]
    provenance = provenance_markdown(results)
    if provenance:
        parts += ["## Provenance", provenance]
    samples = samples_markdown(results)
    if samples:
        parts += ["## Samples", samples]
    parts += list(sections)
    path = out_dir / "report.md"
    atomic_write_text(path, "\n\n".join(parts) + "\n")
    return path


# ----------------------------------------------------------------------------- over seeds


@dataclass
class Spread:
    """One score of one model over seeds: mean ± sample standard deviation, and the range.
    `stderr`: a single score's own standard error, when its task reports one (code completion)."""

    values: list[float]
    stderr: float | None = None

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        if len(self.values) < 2:
            return 0.0
        return math.sqrt(sum((v - self.mean) ** 2 for v in self.values) / (len(self.values) - 1))

    def __str__(self) -> str:
        if len(self.values) < 2:
            return _format(self.values[0])
        std = self.std if self.std > 1e-9 * abs(self.mean) else 0.0  # identical seeds: rounding, not spread
        return f"{self.mean:.4g} ± {std:.2g}"


@dataclass
class SpreadRow:
    task: str  # task[variant]
    metric: str
    cells: dict[str, Spread]  # column -> scores over seeds
    kinds: dict[str, str]  # column -> kind (encoder, decoder, baseline)

    @property
    def label(self) -> str:
        return Row(self.task, self.metric, {}).label

    def winner(self, among: list[str]) -> str:
        """The best of `among` when it beats every other beyond the seeds' spread (its worst seed
        better than their best), else "within spread"; single values with standard errors: ahead
        of every other by more than two standard errors of the difference, else "within 2 s.e.";
        other single values: the best value, or "tie"."""
        present = [c for c in among if c in self.cells]
        if len(present) < 2:
            return ""
        lower = self.metric in LOWER_IS_BETTER
        sign = -1 if lower else 1
        best = max(present, key=lambda c: sign * self.cells[c].mean)
        others = [c for c in present if c != best]
        if all(self.cells[c].stderr is not None for c in present):
            se = {c: self.cells[c].stderr for c in present}
            ahead = all(sign * (self.cells[best].mean - self.cells[c].mean) > 2 * math.hypot(se[best], se[c])
                        for c in others)
            return best if ahead else "within 2 s.e."
        worst_of_best = min(sign * v for v in self.cells[best].values)
        if all(worst_of_best > max(sign * v for v in self.cells[c].values) for c in others):
            return best
        return "within spread" if any(len(self.cells[c].values) > 1 for c in present) else "tie"


def spread_rows(results: list[Result]) -> list[SpreadRow]:
    """One row per (task[variant], metric), each cell a model's values over seeds."""
    table: dict[tuple[str, str], dict[str, list[float]]] = {}
    errors: dict[tuple[str, str, str], float] = {}
    kinds: dict[str, str] = {}
    for result in results:
        kinds[result.column] = result.kind
        for metric, value in result.metrics.items():
            table.setdefault((result.row, metric), {}).setdefault(result.column, []).append(value)
            if (result.details or {}).get("stderr") is not None:
                errors[result.row, metric, result.column] = result.details["stderr"]
    # a standard error belongs to one score, so only a single-valued cell keeps it
    return [SpreadRow(task, metric, {c: Spread(v, errors.get((task, metric, c)) if len(v) == 1 else None)
                                     for c, v in cells.items()}, kinds)
            for (task, metric), cells in table.items()]


def spread_markdown(results: list[Result], models: list[str]) -> str:
    """Models first, baselines after; `best` among `models` only, beyond the seeds' spread."""
    scored = [r for r in results if r.metrics]
    names = [m for m in models if m in columns(scored)] + [c for c in columns(scored) if c not in models]
    lines = ["| task | metric | " + " | ".join(names) + " | best |",
             "|---|---|" + "---:|" * len(names) + "---|"]
    for row in spread_rows(scored):
        cells = [str(row.cells[n]) if n in row.cells else "" for n in names]
        lines.append(f"| {row.task} | {row.metric} | " + " | ".join(cells) + f" | {row.winner(models)} |")
    return "\n".join(lines)


def plot_spread(results: list[Result], path: str | Path) -> Path:
    """A bar per model and baseline for every score, the error bar one standard deviation over seeds."""
    table = spread_rows([r for r in results if r.metrics])
    figure, axes = _panels(max(len(table), 1), width=4.6)
    for ax, row in zip(axes, table):
        names = list(row.cells)
        means = [row.cells[n].mean for n in names]
        errors = [row.cells[n].std for n in names]
        colours = [colour_of(n, row.kinds[n]) for n in names]
        bars = ax.bar(range(len(names)), means, yerr=errors, capsize=4, color=colours)
        ax.bar_label(bars, labels=[_format(m) for m in means], fontsize=7, padding=2)
        ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
        ax.set_title(row.label, fontsize=9)
        if row.metric in LOWER_IS_BETTER:
            ax.set_yscale("log")
        elif min(means) >= 0:
            ax.set_ylim(0, max(m + e for m, e in zip(means, errors)) * 1.2 or 1)
    figure.suptitle("Scores (error bars: ±1 s.d. over fine-tuning seeds; grey: baselines)")
    return save_figure(figure, path)


def colour_of(name: str, kind: str) -> str:
    """A model's colour: its kind's, or its own for a cross-objective continuation (`X-from-Y`)."""
    if "-from-" in name:
        return CROSS_COLOURS.get(kind, "tab:olive")
    return KIND_COLOURS.get(kind, "tab:gray")
