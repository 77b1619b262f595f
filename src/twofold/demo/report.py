"""The demo's `report.md`: the finding in sentences, the scores, samples, curves and times."""

from __future__ import annotations

import math
import re
from pathlib import Path

from twofold.demo.jobs import arm_runs, own_tokens
from twofold.demo.layout import ARMS, CROSS_ARMS, DOWNSTREAM_TASKS, KINDS, DemoLayout
from twofold.files import atomic_write_text
from twofold.report import (
    models_markdown,
    plot_spread,
    plot_training,
    samples_markdown,
    spread_markdown,
    spread_rows,
)
from twofold.results import LOWER_IS_BETTER
from twofold.train.show import human_tokens, plot_recipe


def write_demo_report(layout: DemoLayout, recipe, results, times: dict[str, float],
                      job_times: dict[str, float]) -> Path:
    ended = own_tokens(layout)
    plot_training(arm_runs(layout), layout.root / "loss.png", kinds=KINDS,
                  starts={arm: ended[member] for arm, (member, _) in CROSS_ARMS.items()})
    plot_recipe(recipe, layout.root / "schedule.png")
    plot_spread(results, layout.root / "scores.png")
    models = [r for r in results if r.metrics and r.kind != "baseline"]
    parts = [
        "# twofold demo: an encoder and a decoder trained alike",
        "The same recipe, data and batches for both members, and Ettin's two cross-objective arms: the "
        "decoder continued as an encoder, the encoder continued as a decoder. Then the same fine-tunes "
        "for every model a task suits, scored on held-out modules beside baselines on the same texts "
        "and queries.",
        "## What this shows, and what it does not", findings(results),
        "## Models", models_markdown(models),
        "## Scores", spread_markdown(results, list(ARMS)),
        "Cells: mean ± sample standard deviation over the fine-tuning seeds "
        f"({', '.join(str(s) for s in _fine_tuning_seeds(results))}); "
        "language modelling and code completion are deterministic (one value). `best`: the model "
        "whose worst seed beats every other model's best seed; otherwise `within spread`; for code "
        "completion, the model ahead of every other by more than two standard errors of the "
        "difference; otherwise `within 2 s.e.`. "
        "Baselines are scored on the same tokens, queries and test examples.",
        "![scores](scores.png)",
        "## Samples", samples_markdown(results),
        "## Training",
        "Both members saw the same token sequences in the same order (their batch-order logs hash "
        f"equal at every step: `{layout.pair}/<member>/<phase>/data_order`); only the attention mask "
        "and the objective differ. Each cross arm starts from its member's last checkpoint and is drawn "
        "from where that member ended.",
        "![loss](loss.png)",
        "![schedule](schedule.png)",
        "## Time", _times_markdown(times), _job_times_markdown(job_times),
        "## Reproduce",
        "```\nmake demo                      # or: twofold demo --out runs/demo [--budget 2.5M] [--fresh]\n"
        f"twofold eval {layout.export('encoder')}\n"
        f"twofold compare {layout.eval}\n```",
    ]
    path = layout.root / "report.md"
    atomic_write_text(path, "\n\n".join(parts) + "\n")
    return path


def _fine_tuning_seeds(results) -> list[int]:
    return sorted({r.seed for r in results if r.task in DOWNSTREAM_TASKS and r.kind != "baseline"})


def _times_markdown(times: dict[str, float]) -> str:
    lines = ["| stage | seconds |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in times.items()]
    lines.append(f"| total | {sum(times.values()):.0f} |")
    return "\n".join(lines)


def _job_times_markdown(job_times: dict[str, float]) -> str:
    """Seconds of the jobs in one process each, summed by kind (fine-tunes: over seeds)."""
    kinds: dict[str, float] = {}
    for name, seconds in job_times.items():
        kind = re.sub(r" seed \d+", "", name)
        kinds[kind] = kinds.get(kind, 0.0) + seconds
    lines = ["The jobs ran side by side; each one's own seconds (fine-tunes: all seeds together):", "",
             "| job | seconds |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in kinds.items()]
    return "\n".join(lines)


def findings(results) -> str:
    """What the numbers say about Ettin's finding at this scale, sentence by sentence, never forced."""
    table = {(row.task, row.metric): row for row in spread_rows([r for r in results if r.metrics])}
    mean = lambda key, model: table[key].cells[model].mean if key in table and model in table[key].cells else None
    lines = []
    for task, metric, what in (("package-classification[fine-tuned]", "accuracy", "classification"),
                               ("code-search[fine-tuned]", "ndcg@10", "retrieval (code search)")):
        row = table.get((task, metric))
        if row is None:
            continue
        winner = row.winner(["encoder", "decoder"])
        pair = f"encoder {row.cells['encoder']} vs decoder {row.cells['decoder']} {metric}"
        if winner == "encoder":
            lines.append(f"- **{what}: the encoder wins** ({pair}), beyond the seeds' spread — as Ettin finds.")
        elif winner == "decoder":
            lines.append(f"- **{what}: the decoder wins** ({pair}), beyond the seeds' spread — the opposite "
                         "of Ettin's finding at this scale.")
        else:
            lines.append(f"- {what}: no winner ({pair}): the difference is within the seeds' spread.")
        if "encoder-from-decoder" in row.cells:
            lines.append(f"  The decoder continued as an encoder ({row.cells['encoder-from-decoder']}) "
                         f"{_against(row.winner(['encoder-from-decoder', 'encoder']), 'encoder')}.")
        lines += _baseline_lines(row)
    lines += _generation_lines(table.get(("docstring-generation[fine-tuned]", "chrf")))
    ppl, pseudo = mean(("lm", "perplexity"), "decoder"), mean(("lm[pseudo]", "pseudo_perplexity"), "encoder")
    if ppl is not None and pseudo is not None:
        lines.append(f"- generation: decoder perplexity {ppl:.1f}, encoder pseudo-perplexity {pseudo:.1f}. These "
                     "are not the same quantity (the encoder sees both sides of each token, which makes its "
                     "number lower for the same skill), so the multiple-choice completion below is the fair test.")
    completion = {r.model: r for r in results if r.task == "code-completion" and r.kind != "baseline"}
    if {"encoder", "decoder"} <= set(completion):
        lines.append("- " + _completion_sentence(completion, "decoder", "encoder") + ".")
    continued = mean(("lm", "perplexity"), "decoder-from-encoder")
    if continued is not None and ppl is not None:
        lines.append(f"  The encoder continued as a decoder: perplexity {continued:.1f} against the decoder's "
                     f"{ppl:.1f} (the same quantity now)"
                     + (f"; {_completion_sentence(completion, 'decoder', 'decoder-from-encoder')}"
                        if {"decoder", "decoder-from-encoder"} <= set(completion) else "") + ".")
    lines.append("- " + _targets_sentence(table))
    lines.append("- What it does not show: these are models of about a million parameters trained on "
                 f"{_tokens_text(results)} tokens of one corpus (the Python standard library), with one "
                 "pretraining seed (the seeds vary the fine-tunes only); Ettin's finding is about 17M–1B "
                 "models on trillions of tokens. A result here that disagrees with the paper says this scale "
                 "is too small to show it, not that the paper is wrong.")
    return "\n".join(lines)


def _generation_lines(row) -> list[str]:
    """The generative fine-tune: the encoder continued as a decoder against the decoder (the
    encoder itself cannot generate)."""
    if row is None or not {"decoder", "decoder-from-encoder"} <= set(row.cells):
        return []
    return [f"- generation, fine-tuned (a function's code → its docstring's first line, chrF): the encoder "
            f"continued as a decoder ({row.cells['decoder-from-encoder']}) "
            f"{_against(row.winner(['decoder-from-encoder', 'decoder']), 'decoder')} ({row.cells['decoder']})."
            ] + _baseline_lines(row)


def _baseline_lines(row) -> list[str]:
    """A baseline that beats every model is said, not left for the table to show."""
    baselines = [c for c, kind in row.kinds.items() if kind == "baseline" and c in row.cells]
    models = [c for c in row.cells if c not in baselines]
    if not baselines or not models:
        return []
    sign = -1 if row.metric in LOWER_IS_BETTER else 1
    best = max(baselines, key=lambda c: sign * row.cells[c].mean)
    if all(sign * row.cells[best].mean > sign * row.cells[c].mean for c in models):
        return [f"  The {best} baseline ({row.cells[best]}) beats every model at this: at this scale what the "
                "words on both sides share matters more than anything the models learnt."]
    return []


def _against(winner: str, member: str) -> str:
    """How a cross arm fares against the member whose objective it took on, by `row.winner`."""
    if winner == member:
        return f"does not close the gap: the {member} stays ahead"
    if winner in ("within spread", "tie"):
        return f"is level with the {member}"
    return f"overtakes the {member}"


def _completion_sentence(scored: dict, first: str, second: str) -> str:
    """Code completion of two models: a winner only beyond two standard errors of the difference."""
    a, b = scored[first], scored[second]
    noise = 2 * math.sqrt(a.details["stderr"] ** 2 + b.details["stderr"] ** 2)
    how = {"encoder": " (pseudo-log-likelihood)"}
    text = (f"code completion ({a.n} items, 4 choices, chance 0.25): {first} {a.metrics['accuracy']:.3f} vs "
            f"{second} {b.metrics['accuracy']:.3f}{how.get(second, '')}")
    gap = a.metrics["accuracy"] - b.metrics["accuracy"]
    if abs(gap) <= noise:
        return f"{text}: the difference is within two standard errors ({noise:.3f}); no winner"
    winner = first if gap > 0 else second
    # Ettin: decoders beat encoders at generation, and continuing an encoder as a decoder does not close the gap
    return (f"**{text}: the {winner} wins** beyond two standard errors ({noise:.3f}) — "
            f"{'as Ettin finds' if winner == 'decoder' else 'not what Ettin finds'}")


def _targets_sentence(table) -> str:
    """Each target the demo sets itself (the slow test's), with its value and whether it was met."""
    def get(key, model):
        row = table.get(key)
        return row.cells[model] if row is not None and model in row.cells else None

    def mean(key, model):
        cell = get(key, model)
        return cell.mean if cell is not None else None

    checks = []

    def check(text: str, met: bool) -> None:
        checks.append(f"{text}: {'met' if met else '**missed**'}")

    accuracy = mean(("lm[masked]", "mlm_accuracy"), "encoder")
    if accuracy is not None:
        frequent = mean(("lm[masked]", "mlm_accuracy"), "most-frequent token")
        check(f"encoder MLM accuracy {accuracy:.3f} (target ≥ 0.25; most frequent token {frequent:.3f})",
              accuracy >= 0.25)
    ppl, unigram = mean(("lm", "perplexity"), "decoder"), mean(("lm", "perplexity"), "unigram")
    if ppl is not None and unigram is not None:
        check(f"decoder perplexity {ppl:.1f} = unigram/{unigram / ppl:.2f} (target ≤ unigram/5 = {unigram / 5:.1f})",
              ppl <= unigram / 5)
    ndcg, random = mean(("code-search[fine-tuned]", "ndcg@10"), "encoder"), mean(("code-search[fine-tuned]",
                                                                                   "ndcg@10"), "random")
    if ndcg is not None and random:
        check(f"fine-tuned encoder nDCG@10 {ndcg:.4f} = {ndcg / random:.2f}× random (target ≥ 5×)", ndcg >= 5 * random)
    acc, top = mean(("package-classification[fine-tuned]", "accuracy"), "encoder"), mean(
        ("package-classification[fine-tuned]", "accuracy"), "majority")
    if acc is not None and top is not None:
        check(f"classification {acc:.3f} vs majority {top:.3f} (target ≥ majority + 0.15)", acc >= top + 0.15)
    for model in ("decoder", "decoder-from-encoder"):
        tuned, before = get(("docstring-generation[fine-tuned]", "chrf"), model), mean(
            ("docstring-generation[zero-shot]", "chrf"), model)
        if tuned is not None and before is not None:
            spread = max(tuned.values) - min(tuned.values)
            check(f"{model} chrF {before:.1f} before the generative fine-tune, {tuned.mean:.1f} after (target: "
                  f"its worst seed above the zero-shot score by more than the seeds' spread, {spread:.2f})",
                  min(tuned.values) - before > spread)
    return "did the models learn? " + "; ".join(checks) + "."


def _tokens_text(results) -> str:
    seen = sorted({r.tokens for r in results if r.model in ("encoder", "decoder") and r.tokens})
    return human_tokens(seen[0]) if seen else "a few million"
