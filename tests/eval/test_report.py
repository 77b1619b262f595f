"""What the comparison report shows: its tables, its markdown sections and, read off the matplotlib
figures themselves, what every plot draws (bars, lines, colours, scales) — not the PNG's bytes."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from matplotlib.colors import to_hex

from twofold import report
from twofold.report import (
    Spread,
    colour_of,
    markdown_table,
    models_markdown,
    moving_average,
    provenance_markdown,
    rows,
    samples_markdown,
    spread_markdown,
    spread_rows,
    terminal_table,
    training_figure,
    write_report,
)
from twofold.results import Result
from twofold.train.rundir import RunDir

BLUE, ORANGE, GREY, GREEN, PURPLE, OLIVE = "#1f77b4", "#ff7f0e", "#7f7f7f", "#2ca02c", "#9467bd", "#bcbd22"


def result(model, kind, task, metrics, parameters=1_000_000, **extra):
    return Result(task=task, model=model, metrics=metrics, seed=extra.pop("seed", 0), n=10, kind=kind,
                  parameters=parameters, **extra)


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots would save, kept in memory (path -> Figure)."""
    saved = {}
    monkeypatch.setattr(report, "save_figure", lambda figure, path, dpi=110: saved.setdefault(Path(path), figure)
                        and Path(path))
    return saved


def visible(figure):
    return [ax for ax in figure.axes if ax.get_visible()]


def bars(ax):
    return [(round(p.get_height(), 6), to_hex(p.get_facecolor())) for p in ax.patches]


def ticks(ax):
    return [t.get_text() for t in ax.get_xticklabels()]


# ---------------------------------------------------------------- tables


def test_rows_keep_each_task_together_in_order_of_appearance_variants_sorted_within():
    results = [result("enc", "encoder", "search", {"ndcg@10": 0.5, "mrr": 0.4}, variant="mean"),
               result("enc", "encoder", "lm", {"perplexity": 9.0}),
               result("enc", "encoder", "search", {"ndcg@10": 0.6}, variant="cls"),
               result("dec", "decoder", "search", {"ndcg@10": 0.7}, variant="mean")]
    assert [(r.task, r.metric, r.values) for r in rows(results)] == [
        ("search[cls]", "ndcg@10", {"enc": 0.6}), ("search[mean]", "ndcg@10", {"enc": 0.5, "dec": 0.7}),
        ("search[mean]", "mrr", {"enc": 0.4}), ("lm", "perplexity", {"enc": 9.0})]


def test_the_best_column_says_tie_and_stays_empty_for_a_single_model():
    tied = [result("a", "encoder", "t", {"accuracy": 0.5}), result("b", "decoder", "t", {"accuracy": 0.5}),
            result("c", "decoder", "t", {"accuracy": 0.25})]
    lowest = [result("a", "encoder", "lm", {"perplexity": 3.0}), result("b", "decoder", "lm", {"perplexity": 2.0})]
    assert [r.best for r in rows(tied + lowest)] == ["tie", "b"]
    assert [r.label for r in rows(tied + lowest)] == ["t accuracy ↑", "lm perplexity ↓"]
    assert rows([result("a", "encoder", "t", {"accuracy": 0.5})])[0].best == ""


def test_the_terminal_table_left_aligns_names_and_right_aligns_numbers_under_a_rule():
    results = [result("encoder", "encoder", "code-search", {"ndcg@10": 0.61234}),
               result("d", "decoder", "code-search", {"ndcg@10": 0.4}),
               result("d", "decoder", "lm", {"perplexity": 12.5})]
    assert terminal_table(results).splitlines() == [
        "task         metric      encoder     d     best",
        "-----------  ----------  -------  ----  -------",
        "code-search  ndcg@10      0.6123   0.4  encoder",
        "lm           perplexity        –  12.5         "]
    assert markdown_table(results).splitlines()[:3] == [
        "| task | metric | encoder | d | best |", "| --- | --- | ---: | ---: | --- |",
        "| code-search | ndcg@10 | 0.6123 | 0.4 | encoder |"]


def test_models_are_listed_once_with_their_size_and_training_tokens():
    results = [result("enc", "encoder", "a", {"x": 1.0}, parameters=16_994_560, checkpoint="decay", tokens=1_234_567),
               result("enc", "encoder", "b", {"x": 1.0}, parameters=16_994_560, checkpoint="decay", tokens=1_234_567),
               result("dec", "decoder", "a", {"x": 1.0}, parameters=2_500_000),
               result("big", "decoder", "a", {"x": 1.0}, parameters=10**12)]
    assert models_markdown(results).splitlines() == [
        "| model | kind | parameters | training tokens |", "|---|---|---:|---:|",
        "| enc@decay | encoder | 16.99M | 1,234,567 |", "| dec | decoder | 2.50M | – |",
        "| big | decoder | 1000000.00M | – |"]


def test_samples_show_prompts_outputs_and_how_they_were_decoded():
    sampled = {"do_sample": True, "temperature": 0.8, "top_p": 0.95, "seed": 7, "max_new_tokens": 24}
    results = [
        result("dec", "decoder", "samples", {},
               details={"decoding": sampled, "samples": [{"prompt": "def f(x):\n", "output": " return"}]}),
        result("dec2", "decoder", "samples", {}, details={"decoding": {"do_sample": False, "max_new_tokens": 5},
                                                            "samples": [{"prompt": "a", "output": "b"}]}),
        result("dec3", "decoder", "samples", {}, details={"decoding": {"do_sample": True},
                                                            "samples": [{"prompt": "c", "output": "d"}]}),
        result("enc", "encoder", "samples", {}, details={"samples": [
            {"prompt": "x = [MASK]", "output": [{"token": " 1", "score": 0.51234}, {"token": "2", "score": 0.1}]}]}),
        result("dec4", "decoder", "samples", {}, details={"decoding": {"do_sample": False}})]
    assert samples_markdown(results).splitlines() == [
        "- **dec** continuations, sampled: temperature 0.8, top-p 0.95, seed 7, at most 24 new tokens",
        "- **dec** `'def f(x):\\n'` → `' return'`",
        "- **dec2** continuations, greedy, at most 5 new tokens",
        "- **dec2** `'a'` → `'b'`",
        "- **dec3** continuations, sampled: temperature 1.0, top-p 1.0, seed None",
        "- **dec3** `'c'` → `'d'`",
        "- **enc** `'x = [MASK]'` → `' 1'` 0.512, `'2'` 0.100"]


def test_provenance_names_each_suite_tasks_library_and_data_once():
    files = {"train.tsv": "ab" * 32, "dev.tsv": "cd" * 32}
    digest = hashlib.sha256(("dev.tsv" + "cd" * 32 + "train.tsv" + "ab" * 32).encode()).hexdigest()[:12]
    results = [
        result("enc", "encoder", "sst2", {"accuracy": 0.8}, suite="glue", library="twofold", library_version="1.0",
               data={"path": "/data/sst2", "sha256": files}),
        result("dec", "decoder", "sst2", {"accuracy": 0.7}, suite="glue", library="other", library_version="9"),
        result("enc", "encoder", "piqa", {"acc": 0.6}, suite="lm-eval", library="lm-eval", library_version="0.4",
               data={"dataset": "ybisk/piqa", "config": "plain", "revision": "abc"}),
        result("enc", "encoder", "nfc", {"ndcg@10": 0.3}, suite="mteb", library="mteb", library_version="2",
               data={"dataset": "mteb/nfcorpus", "revision": "r1"}),
        result("enc", "encoder", "boolq", {"acc": 0.5}, suite="lm-eval", library="lm-eval", library_version="0.4"),
        result("enc", "encoder", "cola", {"mcc": 0.1}, suite="glue", library="twofold", library_version="1.0",
               data={"sha256": {"a.tsv": "00"}}),
        result("enc", "encoder", "arc", {"acc": 0.3}, suite="lm-eval", library="lm-eval", library_version="0.4",
               data={"dataset": "allenai/arc"}),
        result("enc", "encoder", "code-search", {"ndcg@10": 0.3}, library="twofold")]  # built in: no provenance
    assert provenance_markdown(results).splitlines() == [
        "| task | library | data |", "|---|---|---|",
        f"| sst2 | twofold 1.0 | local /data/sst2 (2 files, sha256 of all: {digest}) |",
        "| piqa | lm-eval 0.4 | ybisk/piqa/plain @ abc |",
        "| nfc | mteb 2 | mteb/nfcorpus @ r1 |",
        "| boolq | lm-eval 0.4 | – |",
        f"| cola | twofold 1.0 | local  (1 files, sha256 of all: {hashlib.sha256(b'a.tsv00').hexdigest()[:12]}) |",
        "| arc | lm-eval 0.4 | allenai/arc @  |"]
    assert provenance_markdown(results[-1:]) == ""


def test_the_report_holds_models_scores_seeds_failures_plots_provenance_samples_and_extra_sections(tmp_path,
                                                                                                   figures):
    results = [result("enc", "encoder", "sst2", {"accuracy": 0.8}, seed=3, suite="glue", library="twofold",
                      library_version="1"),
               result("dec", "decoder", "sst2", {"accuracy": 0.7}, seed=12),
               result("dec", "decoder", "cola", {}, details={"error": "ValueError: bad"}),
               result("enc", "encoder", "mrpc", {}, details={"error": "OSError: gone"}),
               result("dec", "decoder", "samples", {}, details={"samples": [{"prompt": "p", "output": "q"}]})]
    path = write_report(results, tmp_path / "new" / "out", title="Pair", sections=["## Extra\n\ntext"])
    assert path == tmp_path / "new" / "out" / "report.md"
    assert path.read_text() == "\n\n".join([
        "# Pair", models_markdown(results), "## Scores", markdown_table(results),
        "`best`: the winner of each row (↓ lower is better, ↑ higher). Seeds: 0, 12, 3.",
        "Tasks that failed (their error; the other tasks ran):",
        "- **dec** `cola`: ValueError: bad\n- **enc** `mrpc`: OSError: gone",
        "![scores](scores.png)", "## Provenance", provenance_markdown(results), "## Samples",
        "- **dec** `'p'` → `'q'`", "## Extra\n\ntext"]) + "\n"
    assert list(figures) == [tmp_path / "new" / "out" / "scores.png"]
    assert write_report(results[:2], tmp_path / "new" / "out") == path  # an existing folder is written again
    bare = write_report(results[1:2], tmp_path / "bare")
    assert bare.read_text().split("\n\n")[0] == "# Evaluation"
    assert "failed" not in bare.read_text() and "## Provenance" not in bare.read_text() and "## Samples" not in \
        bare.read_text()


def test_a_report_of_results_without_scores_has_no_plots(tmp_path, figures):
    assert report.plots([result("dec", "decoder", "samples", {})], tmp_path) == []
    assert figures == {}


# ---------------------------------------------------------------- plots, read off the figures


def test_the_scores_figure_has_a_panel_per_score_bars_coloured_by_kind_from_zero(tmp_path, figures):
    results = [result("enc", "encoder", "t1", {"accuracy": 0.8, "f1": 0.412345}),
               result("dec", "decoder", "t1", {"accuracy": 0.6, "f1": 0.5}),
               result("bm25", "baseline", "t1", {"accuracy": 0.2}),
               result("odd", "mystery", "t1", {"accuracy": 0.1}),
               result("enc", "encoder", "t2", {"delta": -0.5}),
               result("dec", "decoder", "t2", {"delta": 1.5})]
    assert report.plot_scores(results, tmp_path / "s.png") == tmp_path / "s.png"
    figure = figures[tmp_path / "s.png"]
    assert len(figure.axes) == len(visible(figure)) == 3  # three panels in one row
    accuracy, f1, delta = visible(figure)
    assert [ax.get_title() for ax in (accuracy, f1, delta)] == ["t1 accuracy ↑", "t1 f1 ↑", "t2 delta ↑"]
    assert bars(accuracy) == [(0.8, BLUE), (0.6, ORANGE), (0.2, GREY), (0.1, GREY)]
    assert ticks(accuracy) == ["enc", "dec", "bm25", "odd"]
    assert [t.get_text() for t in accuracy.texts] == ["0.8", "0.6", "0.2", "0.1"]  # each bar's value on it
    assert [t.get_text() for t in f1.texts] == ["0.4123", "0.5"]  # four significant digits, as the table
    assert accuracy.get_ylim() == pytest.approx((0, 0.8 * 1.15)) and f1.get_ylim() == pytest.approx((0, 0.5 * 1.15))
    assert delta.get_ylim()[0] < -0.5  # a negative bar is not cut off at zero
    assert figure.get_suptitle() == "Evaluation scores (blue: encoder, orange: decoder)"
    five = [result(f"m{i}", "encoder", f"t{i}", {"accuracy": 0.5}) for i in range(5)]
    report.plot_scores(five, tmp_path / "five.png")
    five = figures[tmp_path / "five.png"]  # rows of at most four panels, the unused places hidden
    assert (len(five.axes), len(visible(five)), five.get_size_inches().tolist()) == (8, 5, [16.0, 6.4])
    report.plot_scores([result("z", "encoder", "t", {"accuracy": 0.0})], tmp_path / "zero.png")
    zero = figures[tmp_path / "zero.png"]
    assert len(zero.axes) == 1 and zero.axes[0].get_ylim() == (0, 1)  # all zero: a unit axis


def lines_of(ax):
    """label -> (x, y, colour, line style) of each line, every point drawn as a dot."""
    assert {line.get_marker() for line in ax.lines} == {"o"}
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()), to_hex(line.get_color()),
                               line.get_linestyle()) for line in ax.lines}


def test_score_against_parameters_joins_each_role_across_sizes_and_dashes_a_continuation(tmp_path, figures):
    results = [result("32m/encoder", "encoder", "t", {"accuracy": 0.7}, parameters=32),
               result("17m/encoder", "encoder", "t", {"accuracy": 0.6}, parameters=17),
               result("17m/decoder", "decoder", "t", {"accuracy": 0.5}, parameters=17),
               result("32m/decoder", "decoder", "t", {"accuracy": 0.55}, parameters=32),
               result("17m/encoder-from-decoder", "encoder", "t", {"accuracy": 0.4}, parameters=17),
               result("32m/encoder-from-decoder", "encoder", "t", {"accuracy": 0.45}, parameters=32)]
    report.plot_against(results, tmp_path / "p.png", "parameters")
    ax = visible(figures[tmp_path / "p.png"])[0]
    assert lines_of(ax) == {"decoder": ([17, 32], [0.5, 0.55], ORANGE, "-"),
                            "encoder": ([17, 32], [0.6, 0.7], BLUE, "-"),
                            "encoder-from-decoder": ([17, 32], [0.4, 0.45], BLUE, "--")}
    assert (ax.get_xscale(), ax.get_xlabel(), ax.get_title()) == ("log", "parameters", "t accuracy ↑")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["decoder", "encoder", "encoder-from-decoder"]
    # models of different names, one of each size: joined by kind instead of left as dots
    named = [result("small-enc", "encoder", "t", {"accuracy": 0.6}, parameters=17),
             result("big-enc", "encoder", "t", {"accuracy": 0.7}, parameters=32),
             result("dec", "decoder", "t", {"accuracy": 0.5}, parameters=17)]
    report.plot_against(named, tmp_path / "n.png", "parameters")
    assert lines_of(visible(figures[tmp_path / "n.png"])[0]) == {"decoder": ([17], [0.5], ORANGE, "-"),
                                                                 "encoder": ([17, 32], [0.6, 0.7], BLUE, "-")}


def test_score_against_tokens_draws_a_line_per_model_through_its_checkpoints(tmp_path, figures):
    results = [result("17m/enc", "encoder", "t", {"accuracy": a}, checkpoint=f"s{t}", tokens=t)
               for t, a in ((300, 0.6), (100, 0.2), (200, 0.5))] + \
              [result("17m/dec", "decoder", "t", {"accuracy": 0.3}, checkpoint="s1", tokens=100),
               result("17m/dec", "decoder", "t", {"accuracy": 0.4}, checkpoint="x"),  # tokens unknown: no point
               result("17m/dec", "decoder", "t", {"accuracy": 0.35}, checkpoint="s2", tokens=200)]
    report.plot_against(results, tmp_path / "t.png", "tokens")
    figure = figures[tmp_path / "t.png"]
    ax = visible(figure)[0]
    assert len(figure.axes) == 1  # one score: one panel, nothing hidden
    assert lines_of(ax) == {"17m/dec": ([100, 200], [0.3, 0.35], ORANGE, "--"),
                            "17m/enc": ([100, 200, 300], [0.2, 0.5, 0.6], BLUE, "--")}
    assert (ax.get_xscale(), ax.get_xlabel()) == ("log", "training tokens")


def test_the_ettin_figure_has_a_panel_per_family_a_line_per_kind_against_size(tmp_path, figures):
    def family(model, kind, task, score, parameters):
        return result(model, kind, task, {"score": score}, parameters=parameters, suite="ettin",
                      details={"family": f"{task} family"})

    results = [family("32m/enc", "encoder", "glue", 0.8, 32), family("17m/enc", "encoder", "glue", 0.7, 17),
               family("17m/dec", "decoder", "glue", 0.6, 17), family("17m/enc", "encoder", "gen", 0.2, 17),
               family("32m/dec", "decoder", "gen", 0.5, 32),
               result("17m/enc", "encoder", "other", {"score": 9.0}, parameters=17),  # not an ettin result
               result("17m/enc", "encoder", "glue2", {}, parameters=17, suite="ettin")]  # failed: no scores
    report.plot_families(results, tmp_path / "e.png")
    figure = figures[tmp_path / "e.png"]
    glue, gen = visible(figure)
    assert (glue.get_title(), gen.get_title()) == ("glue family", "gen family")
    assert lines_of(glue) == {"decoder": ([17], [0.6], ORANGE, "-"), "encoder": ([17, 32], [0.7, 0.8], BLUE, "-")}
    assert lines_of(gen) == {"decoder": ([32], [0.5], ORANGE, "-"), "encoder": ([17], [0.2], BLUE, "-")}
    assert (glue.get_xscale(), glue.get_xlabel()) == ("log", "parameters")
    assert [t.get_text() for t in glue.get_legend().get_texts()] == ["decoder", "encoder"]
    assert figure.get_suptitle() == "Encoder vs decoder by size (the Ettin protocol)"
    report.plot_families([result("enc", "encoder", "mteb", {"score": 0.4}, suite="ettin")], tmp_path / "one.png")
    one = figures[tmp_path / "one.png"]
    assert len(one.axes) == 1 and one.axes[0].get_title() == "mteb"  # no family named: the task's name


def test_plots_are_made_for_what_the_results_hold(tmp_path, figures):
    one = [result("enc", "encoder", "t", {"accuracy": 0.5}), result("dec", "decoder", "t", {"accuracy": 0.4})]
    assert report.plots(one, tmp_path / "a") == [tmp_path / "a" / "scores.png"]
    sized = one + [result("big", "encoder", "t", {"accuracy": 0.6}, parameters=9)]
    assert report.plots(sized, tmp_path / "b") == [tmp_path / "b" / "scores.png", tmp_path / "b" / "vs-parameters.png"]
    ettin = [result("17m/enc", "encoder", "t", {"score": 0.5}, suite="ettin", tokens=10, checkpoint="c")]
    assert report.plots(ettin, tmp_path / "c") == [tmp_path / "c" / name for name in
                                                   ("scores.png", "vs-tokens.png", "ettin.png")]
    assert [line.get_label() for line in visible(figures[tmp_path / "c" / "vs-tokens.png"])[0].lines] == ["17m/enc"]
    x_axes = {path.name: visible(figure)[0].get_xlabel() for path, figure in figures.items() if path.parent.name != "a"}
    assert x_axes == {"scores.png": "", "vs-parameters.png": "parameters", "vs-tokens.png": "training tokens",
                      "ettin.png": "parameters"}


def test_the_training_figure_gives_each_arm_its_colour_a_trend_and_readable_phase_labels(tmp_path):
    """A continuation is drawn from where its member ended, in a colour of its own; each run's
    noisy per-step loss lies under its moving average; phase labels never sit on each other."""
    def run(name, phases, loss):
        folder = tmp_path / name
        folder.mkdir()
        records, tokens = [], 0
        for phase, steps in phases:
            for step in range(steps):
                tokens += 100
                records.append({"phase": phase, "tokens": tokens, "phase_tokens": 100 * (step + 1),
                                "loss": loss(len(records))})
                if tokens % 10_000 == 0:  # a held-out evaluation every 100 steps
                    records.append({"phase": phase, "tokens": tokens, "eval_loss": tokens / 10_000})
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        return RunDir(folder)

    noisy = lambda base: lambda i: base * math.exp(-i / 200) + (0.5 if i % 2 else -0.5)
    runs = {"encoder": run("encoder", [("pretrain", 250), ("extension", 50), ("decay", 100)], noisy(8)),
            "decoder": run("decoder", [("pretrain", 250), ("extension", 50), ("decay", 100)], noisy(7)),
            "encoder-from-decoder": run("efd", [("cross", 100)], noisy(5)),
            "decoder-from-encoder": run("dfe", [("cross", 100)], noisy(5))}
    figure = training_figure(runs, starts={"encoder-from-decoder": 40_000, "decoder-from-encoder": 40_000},
                             kinds={"encoder-from-decoder": "encoder", "decoder-from-encoder": "decoder"})
    ax = figure.axes[0]
    trends = {line.get_label().split(" (")[0]: line for line in ax.lines if "moving average" in line.get_label()}
    assert set(trends) == set(runs)
    colours = {name: line.get_color() for name, line in trends.items()}
    assert len(set(colours.values())) == 4, colours  # no arm in another's colour
    assert trends["encoder-from-decoder"].get_xdata()[0] == 40_000 + 100  # drawn from where the decoder ended
    for name, steps in (("encoder", 400), ("encoder-from-decoder", 100)):  # the trend: a mean over 1/40 of the run
        window = max(5, steps // 40)  # 10 and 5 steps
        raw = [r["loss"] for r in runs[name].metrics() if "loss" in r]
        expected = [sum(raw[max(0, i + 1 - window):i + 1]) / min(i + 1, window) for i in range(len(raw))]
        assert list(trends[name].get_ydata()) == pytest.approx(expected)
    held = {line.get_label(): line for line in ax.lines if "held-out" in line.get_label()}
    assert sorted(held) == ["decoder (held-out)", "decoder-from-encoder (held-out)", "encoder (held-out)",
                            "encoder-from-decoder (held-out)"]
    line = held["encoder-from-decoder (held-out)"]  # evaluated at 10K of its own tokens: 50K on the axis
    assert (list(line.get_xdata()), list(line.get_ydata())) == ([50_000], [1.0])
    assert (line.get_color(), line.get_marker(), line.get_linestyle()) == (colours["encoder-from-decoder"], "o", ":")
    assert list(held["encoder (held-out)"].get_xdata()) == [10_000, 20_000, 30_000, 40_000]
    for name, line in trends.items():  # the faint raw loss is under the trend, which is smoother
        raw = next(r for r in ax.lines if r.get_color() == colours[name] and r.get_alpha() == 0.2)
        assert list(raw.get_xdata()) == list(line.get_xdata())
        wiggle = lambda ys: sum(abs(b - a) for a, b in zip(ys, ys[1:]))
        assert wiggle(line.get_ydata()) < 0.3 * wiggle(raw.get_ydata())
    # each phase's name above the axes where it starts, neighbours at two heights: never on each other
    labels = sorted((tuple(text.xy), text.get_text()) for text in ax.texts)
    assert labels == [((0, 1.01), "pretrain"), ((25_000, 1.06), "extension"), ((30_000, 1.01), "decay"),
                      ((40_000, 1.06), "cross")]
    assert {text.xycoords for text in ax.texts} == {("data", "axes fraction")}
    vertical = lambda line: len(line.get_xdata()) == 2 and len(set(line.get_xdata())) == 1
    marks = [line for line in ax.lines if vertical(line)]  # the phases' lines
    assert sorted(line.get_xdata()[0] for line in marks) == [0, 25_000, 30_000, 40_000]
    assert (ax.get_xlabel(), ax.get_ylabel()) == (
        "training tokens (a continuation from where the run it continues ended)",
        "loss (MLM for encoders, CLM for decoders)")
    figure.canvas.draw()  # the legend sits beside the curves, never over them
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_a_run_without_phase_tokens_marks_its_phase_at_each_step_and_the_plot_is_the_figure(tmp_path, figures):
    folder = tmp_path / "old"
    folder.mkdir()  # metrics written without `phase_tokens`: every step's own tokens are a start
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"phase": "p", "tokens": t, "loss": 1.0}) + "\n"
                                                  for t in (100, 200)))
    assert report.plot_training({"decoder": RunDir(folder)}, tmp_path / "t.png", starts={"decoder": 50},
                                kinds={"decoder": "encoder"}) == tmp_path / "t.png"
    ax = figures[tmp_path / "t.png"].axes[0]
    assert sorted(text.xy[0] for text in ax.texts) == [150, 250]
    assert {to_hex(line.get_color()) for line in ax.lines if "decoder" in line.get_label()} == {BLUE}  # its kind's


def test_a_line_joins_a_role_across_sizes_or_a_model_across_its_checkpoints():
    crossed = result("runs/17m/encoder-from-decoder", "encoder", "t", {"accuracy": 0.5})
    assert report.line_name(crossed, "parameters") == "encoder-from-decoder"
    assert report.line_name(crossed, "tokens") == "runs/17m/encoder-from-decoder"


# ---------------------------------------------------------------- over seeds


def test_a_spread_is_the_mean_and_sample_deviation_and_identical_seeds_show_none():
    spread = Spread([1.0, 2.0, 6.0])
    assert (spread.mean, spread.std) == (3.0, pytest.approx(math.sqrt(7.0)))  # n - 1: 14 / 2
    assert str(spread) == "3 ± 2.6" and str(Spread([0.25])) == "0.25"
    assert str(Spread([0.1 + 0.2, 0.3, 0.3])) == "0.3 ± 0"  # a difference of rounding is no spread
    assert str(Spread([1000.0, 1000.0 + 1.4e-7])) == "1000 ± 0"  # below a billionth of the mean: rounding
    assert str(Spread([1000.0, 1000.0 + 1.4e-5])) == "1000 ± 9.9e-06"


def test_a_cell_keeps_a_standard_error_only_for_a_single_score():
    def scored(model, value, seed, stderr):
        return result(model, "encoder", "t", {"accuracy": value}, seed=seed, details={"stderr": stderr})

    table = spread_rows([scored("a", 0.5, 0, 0.01), scored("b", 0.4, 0, 0.02), scored("b", 0.45, 1, 0.02),
                         result("c", "baseline", "t", {"accuracy": 0.3})])
    cells = table[0].cells
    assert (cells["a"].values, cells["a"].stderr) == ([0.5], 0.01)
    assert (cells["b"].values, cells["b"].stderr) == ([0.4, 0.45], None)
    assert (cells["c"].stderr, table[0].kinds) == (None, {"a": "encoder", "b": "encoder", "c": "baseline"})


@pytest.mark.parametrize("metric, scores, expected", [
    # lower is better: the lowest mean wins when its worst seed beats every other's best
    ("perplexity", {"a": [3.0, 3.5], "b": [4.0, 4.5]}, "a"),
    ("perplexity", {"a": [3.0, 4.2], "b": [4.0, 4.5]}, "within spread"),
    # higher is better, three models: the best must beat both others beyond their spreads
    ("accuracy", {"a": [0.5, 0.6], "b": [0.3, 0.4], "c": [0.45, 0.55]}, "within spread"),
    ("accuracy", {"a": [0.7, 0.6], "b": [0.3, 0.4], "c": [0.45, 0.55]}, "a"),
    # single values without standard errors: the best value, or a tie
    ("accuracy", {"a": [0.5], "b": [0.5]}, "tie"),
    ("perplexity", {"a": [5.0], "b": [4.0]}, "b"),
    # a model not asked about is not in the running; fewer than two asked about: no winner
    ("accuracy", {"a": [0.2], "b": [0.3], "z": [0.9]}, "b"),
    ("accuracy", {"a": [0.2], "z": [0.9]}, ""),
])
def test_the_winner_beyond_the_seeds_spread(metric, scores, expected):
    results = [result(model, "encoder", "t", {metric: v}, seed=seed)
               for model, values in scores.items() for seed, v in enumerate(values)]
    assert spread_rows(results)[0].winner(["a", "b", "c"]) == expected


def test_two_standard_errors_of_the_difference_decide_in_either_direction():
    def single(model, value, stderr, metric="accuracy"):
        return result(model, "encoder", "t", {metric: value}, details={"stderr": stderr})

    # 0.3 ahead with standard errors 0.1 and 0.1: 2 * hypot = 0.283 < 0.3 (their sum, 0.4, would refuse it)
    assert spread_rows([single("a", 0.8, 0.1), single("b", 0.5, 0.1)])[0].winner(["a", "b"]) == "a"
    assert spread_rows([single("a", 0.8, 0.2), single("b", 0.5, 0.1)])[0].winner(["a", "b"]) == "within 2 s.e."
    # lower is better: the lower perplexity is ahead, by the same two standard errors
    assert spread_rows([single("a", 5.0, 0.1, "perplexity"),
                        single("b", 6.0, 0.1, "perplexity")])[0].winner(["a", "b"]) == "a"
    assert spread_rows([single("a", 5.0, 0.1, "perplexity"),
                        single("b", 5.2, 0.1, "perplexity")])[0].winner(["a", "b"]) == "within 2 s.e."
    # exactly two standard errors ahead (2 x hypot(0.75, 1) = 2.5, exact in binary) is not beyond them
    assert spread_rows([single("a", 3.5, 0.75), single("b", 1.0, 1.0)])[0].winner(["a", "b"]) == "within 2 s.e."
    # one model without a standard error: the spread rule decides
    assert spread_rows([single("a", 0.8, 0.3), result("b", "encoder", "t", {"accuracy": 0.5})])[0].winner(
        ["a", "b"]) == "a"


def test_the_spread_table_puts_models_first_then_baselines_and_leaves_missing_cells_empty():
    results = [result("bm25", "baseline", "t", {"accuracy": 0.9}),
               result("dec", "decoder", "t", {"accuracy": 0.4}),
               result("enc", "encoder", "t", {"accuracy": 0.6}),
               result("enc", "encoder", "u", {"accuracy": 0.7}),
               result("dec", "decoder", "u", {"accuracy": 0.2}),
               result("gone", "encoder", "v", {})]
    assert spread_markdown(results, ["enc", "dec", "absent"]).splitlines() == [
        "| task | metric | enc | dec | bm25 | best |", "|---|---|---:|---:|---:|---|",
        "| t | accuracy | 0.6 | 0.4 | 0.9 | enc |", "| u | accuracy | 0.7 | 0.2 |  | enc |"]


def test_the_spread_figure_shows_means_and_one_deviation_on_a_log_axis_for_perplexity(tmp_path, figures):
    results = [result("enc", "encoder", "t", {"accuracy": v, "perplexity": p}, seed=s)
               for s, (v, p) in enumerate(((0.5, 10.0), (0.7, 30.0)))] + \
              [result("dec", "decoder", "t", {"accuracy": 0.412345, "perplexity": 5.0}),
               result("encoder-from-decoder", "encoder", "t", {"accuracy": 0.3, "perplexity": 8.0}),
               result("bm25", "baseline", "t", {"accuracy": 0.2, "perplexity": 9.0})]
    report.plot_spread(results, tmp_path / "spread.png")
    accuracy, perplexity = visible(figures[tmp_path / "spread.png"])
    assert bars(accuracy) == [(0.6, BLUE), (0.412345, ORANGE), (0.3, GREEN), (0.2, GREY)]
    assert ticks(accuracy) == ["enc", "dec", "encoder-from-decoder", "bm25"]
    error_bar = accuracy.collections[0].get_segments()[0]  # enc's: mean ± the sample deviation of 0.5, 0.7
    assert [y for _, y in error_bar] == pytest.approx([0.6 - math.sqrt(0.02), 0.6 + math.sqrt(0.02)])
    assert accuracy.get_ylim() == pytest.approx((0, (0.6 + math.sqrt(0.02)) * 1.2))
    assert (accuracy.get_yscale(), perplexity.get_yscale()) == ("linear", "log")
    assert [p.get_height() for p in perplexity.patches] == [20.0, 5.0, 8.0, 9.0]
    assert (accuracy.get_title(), perplexity.get_title()) == ("t accuracy ↑", "t perplexity ↓")
    assert [t.get_text() for t in accuracy.texts] == ["0.6", "0.4123", "0.3", "0.2"]  # each mean on its bar
    assert figures[tmp_path / "spread.png"].get_suptitle() == \
        "Scores (error bars: ±1 s.d. over fine-tuning seeds; grey: baselines)"
    # one score: one panel; a score at zero still grows from zero; all zero: a unit axis
    report.plot_spread([result("a", "encoder", "u", {"f1": 0.0}), result("b", "decoder", "u", {"f1": 0.5})],
                       tmp_path / "zero.png")
    zero = figures[tmp_path / "zero.png"]
    assert len(zero.axes) == 1 and zero.axes[0].get_ylim() == pytest.approx((0, 0.6))
    report.plot_spread([result("a", "encoder", "u", {"f1": 0.0})], tmp_path / "none.png")
    assert figures[tmp_path / "none.png"].axes[0].get_ylim() == (0, 1)


@pytest.mark.parametrize("name, kind, colour", [
    ("encoder", "encoder", BLUE), ("17m/decoder", "decoder", ORANGE), ("BM25", "baseline", GREY),
    ("x", "unknown", GREY), ("encoder-from-decoder", "encoder", GREEN), ("decoder-from-encoder", "decoder", PURPLE),
    ("a-from-b", "baseline", OLIVE)])
def test_each_model_gets_its_kinds_colour_and_a_continuation_one_of_its_own(name, kind, colour):
    assert to_hex(colour_of(name, kind)) == colour
