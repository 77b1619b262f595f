"""The demo's `report.md`: the finding in sentences, the scores, samples, curves and times."""

from __future__ import annotations

import math
import re
from pathlib import Path

from twofold.demo.jobs import arm_runs
from twofold.demo.layout import ARMS, CROSS_ARM, DOWNSTREAM_TASKS, DemoLayout
from twofold.files import atomic_write_text
from twofold.report import (
    models_markdown,
    plot_spread,
    plot_training,
    samples_markdown,
    spread_markdown,
    spread_rows,
)
from twofold.train.show import human_tokens, plot_recipe


def write_demo_report(layout: DemoLayout, recipe, results, times: dict[str, float],
                      job_times: dict[str, float]) -> Path:
    plot_training(arm_runs(layout), layout.root / "loss.png")
    plot_recipe(recipe, layout.root / "schedule.png")
    plot_spread(results, layout.root / "scores.png")
    models = [r for r in results if r.metrics and r.kind != "baseline"]
    parts = [
        "# twofold demo: an encoder and a decoder trained alike",
        "The same recipe, data and batches for both members (and a third arm: the decoder continued "
        "as an encoder); then the same fine-tunes for all three, scored on held-out modules beside "
        "baselines on the same texts and queries.",
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
        "and the objective differ. The cross arm starts from the decoder's last checkpoint.",
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
        cross = row.winner([CROSS_ARM, "encoder"]) if CROSS_ARM in row.cells else ""
        if cross:
            verdict = {"encoder": "does not close the gap: the encoder stays ahead",
                       CROSS_ARM: "overtakes the encoder", "within spread": "is level with the encoder",
                       "tie": "is level with the encoder"}[cross]
            lines.append(f"  The decoder continued as an encoder ({row.cells[CROSS_ARM]}) {verdict}.")
    ppl, pseudo = mean(("lm", "perplexity"), "decoder"), mean(("lm[pseudo]", "pseudo_perplexity"), "encoder")
    if ppl is not None and pseudo is not None:
        lines.append(f"- generation: decoder perplexity {ppl:.1f}, encoder pseudo-perplexity {pseudo:.1f}. These "
                     "are not the same quantity (the encoder sees both sides of each token, which makes its "
                     "number lower for the same skill), so the multiple-choice completion below is the fair test.")
    completion = table.get(("code-completion", "accuracy"))
    if completion is not None and {"encoder", "decoder"} <= set(completion.cells):
        lines.append("- " + _completion_sentence(results))
    lines.append("- " + _targets_sentence(table))
    lines.append("- What it does not show: these are models of about a million parameters trained on "
                 f"{_tokens_text(results)} tokens of one corpus (the Python standard library), with one "
                 "pretraining seed (the seeds vary the fine-tunes only); Ettin's finding is about 17M–1B "
                 "models on trillions of tokens. A result here that disagrees with the paper says this scale "
                 "is too small to show it, not that the paper is wrong.")
    return "\n".join(lines)


def _completion_sentence(results) -> str:
    scored = {r.model: r for r in results if r.task == "code-completion" and r.kind != "baseline"}
    encoder, decoder = scored["encoder"], scored["decoder"]
    a, b = encoder.metrics["accuracy"], decoder.metrics["accuracy"]
    noise = 2 * math.sqrt(encoder.details["stderr"] ** 2 + decoder.details["stderr"] ** 2)
    text = (f"code completion ({decoder.n} items, 4 choices, chance 0.25): decoder {b:.3f} vs encoder {a:.3f} "
            f"(pseudo-log-likelihood)")
    if b - a > noise:
        return f"**{text}: the decoder wins** beyond two standard errors ({noise:.3f}) — as Ettin finds."
    if a - b > noise:
        return f"**{text}: the encoder wins** beyond two standard errors ({noise:.3f}) — not what Ettin finds."
    return f"{text}: the difference is within two standard errors ({noise:.3f}); no winner."


def _targets_sentence(table) -> str:
    def get(key, model):
        row = table.get(key)
        return row.cells[model].mean if row is not None and model in row.cells else None

    checks = []
    accuracy, frequent = get(("lm[masked]", "mlm_accuracy"), "encoder"), get(("lm[masked]", "mlm_accuracy"),
                                                                                "most-frequent token")
    if accuracy is not None:
        checks.append(f"encoder MLM accuracy {accuracy:.3f} (target ≥ 0.25; most frequent token {frequent:.3f})")
    ppl, unigram = get(("lm", "perplexity"), "decoder"), get(("lm", "perplexity"), "unigram")
    if ppl is not None and unigram is not None:
        checks.append(f"decoder perplexity {ppl:.1f} = unigram/{unigram / ppl:.1f} (target ≤ unigram/5 "
                      f"= {unigram / 5:.1f})")
    ndcg, random = get(("code-search[fine-tuned]", "ndcg@10"), "encoder"), get(("code-search[fine-tuned]",
                                                                                 "ndcg@10"), "random")
    if ndcg is not None and random:
        checks.append(f"fine-tuned encoder nDCG@10 {ndcg:.3f} = {ndcg / random:.1f}× random (target ≥ 5×)")
    acc, top = get(("package-classification[fine-tuned]", "accuracy"), "encoder"), get(
        ("package-classification[fine-tuned]", "accuracy"), "majority")
    if acc is not None and top is not None:
        checks.append(f"classification {acc:.3f} vs majority {top:.3f} (target ≥ majority + 0.15)")
    return "did the members learn? " + "; ".join(checks) + "."


def _tokens_text(results) -> str:
    seen = sorted({r.tokens for r in results if r.model in ("encoder", "decoder") and r.tokens})
    return human_tokens(seen[0]) if seen else "a few million"
