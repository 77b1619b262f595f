"""`twofold eval` / `twofold compare`: results, tables, plots, checkpoints, and the exit-2 contract."""

from pathlib import Path

import pytest
from tests.eval.conftest import tagged_run

import twofold
from twofold.cli import main
from twofold.report import line_name, markdown_table, plots, rows, terminal_table
from twofold.results import Result, load_results, save_results

TINY_FLAGS = ["--max-length", "48", "--lm-tokens", "200", "--pseudo-perplexity-tokens", "8",
              "--max-queries", "8", "--batch-size", "16"]


def result(model, kind, task, metrics, parameters=1_000_000, **extra):
    return Result(task=task, model=model, metrics=metrics, seed=0, n=10, kind=kind, parameters=parameters, **extra)


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_table_names_the_best_model_per_row_in_its_direction():
    results = [result("enc", "encoder", "code-search", {"ndcg@10": 0.6}),
               result("dec", "decoder", "code-search", {"ndcg@10": 0.4}),
               result("enc", "encoder", "lm", {"pseudo_perplexity": 30.0}),
               result("dec", "decoder", "lm", {"perplexity": 20.0}),
               result("dec2", "decoder", "lm", {"perplexity": 25.0})]
    best = {(row.task, row.metric): row.best for row in rows(results)}
    assert best == {("code-search", "ndcg@10"): "enc", ("lm", "pseudo_perplexity"): "", ("lm", "perplexity"): "dec"}
    table = markdown_table(results)
    assert table.splitlines()[0] == "| task | metric | enc | dec | dec2 | best |"
    assert "| lm | pseudo_perplexity | 30 | – | – |  |" in table
    assert "0.6" in terminal_table(results)


def test_plots_follow_what_the_results_hold(tmp_path):
    pair = [result("enc", "encoder", "cls", {"accuracy": 0.7}), result("dec", "decoder", "cls", {"accuracy": 0.5})]
    assert [p.name for p in plots(pair, tmp_path / "pair")] == ["scores.png"]
    sizes = pair + [result("enc-big", "encoder", "cls", {"accuracy": 0.8}, parameters=9_000_000)]
    made = plots(sizes, tmp_path / "sizes")
    assert [p.name for p in made] == ["scores.png", "vs-parameters.png"] and all(map(is_png, made))
    steps = [result("enc", "encoder", "cls", {"accuracy": a}, checkpoint=f"step{i}", tokens=1000 * i)
             for i, a in enumerate((0.3, 0.5, 0.6), start=1)]
    assert "vs-tokens.png" in [p.name for p in plots(steps, tmp_path / "steps")]


def test_lines_join_a_role_across_sizes_and_a_model_across_checkpoints():
    crossed = result("17m/encoder-from-decoder", "encoder", "cls", {"accuracy": 0.5}, checkpoint="step1", tokens=5)
    assert line_name(crossed, "parameters") == "encoder-from-decoder"
    assert line_name(crossed, "tokens") == "17m/encoder-from-decoder"


def test_compare_two_runs_side_by_side(tmp_path, capsys):
    for run, score in (("small", 0.4), ("big", 0.6)):
        save_results([result("encoder", "encoder", "code-search", {"ndcg@10": score}, parameters=len(run) * 10**6),
                      result("decoder", "decoder", "code-search", {"ndcg@10": score / 2}, parameters=len(run) * 10**6)],
                     tmp_path / run / "eval")
    out = tmp_path / "compare"
    assert main(["compare", str(tmp_path / "small"), str(tmp_path / "big" / "eval"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "small/encoder" in printed and "big/decoder" in printed
    assert "big/encoder" in (out / "report.md").read_text()
    assert is_png(out / "scores.png") and is_png(out / "vs-parameters.png")


def test_a_suite_folder_gives_its_scores_not_its_working_fine_tunes(tmp_path):
    """`eval --suite` keeps its fine-tunes' own results under work/: steps towards a score, not rows."""
    save_results([result("encoder", "encoder", "glue-sst2", {"accuracy": 0.8})], tmp_path / "suite")
    save_results([result("encoder", "encoder", "classify", {"accuracy": 0.7})],
                 tmp_path / "suite" / "work" / "encoder" / "glue-sst2" / "lr-1e-05" / "results")
    assert [(r.model, r.task) for r in load_results(tmp_path / "suite")] == [("encoder", "glue-sst2")]
    assert len(load_results(tmp_path / "suite" / "work")) == 1  # asked for by name, it is read


def test_suite_folders_of_one_pair_compare_one_column_per_member(tmp_path, capsys):
    for suite, task in (("glue", "glue-sst2"), ("lm-eval", "piqa")):
        save_results([result("encoder", "encoder", task, {"accuracy": 0.6}),
                      result("decoder", "decoder", task, {"accuracy": 0.7})], tmp_path / suite)
    assert main(["compare", str(tmp_path / "glue"), str(tmp_path / "lm-eval"), "--out", str(tmp_path / "c")]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert sorted(header.split()[2:4]) == ["decoder", "encoder"] and "glue/" not in header, header


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory, encoder, decoder, tokenizer):
    root = tmp_path_factory.mktemp("pair")
    for name, model in (("encoder", encoder), ("decoder", decoder)):
        twofold.save(model, root / name, tokenizer=Path(tokenizer.source).parent)
    return root


def test_eval_a_pair_folder_writes_json_table_and_report(pair_dir, capsys):
    assert main(["eval", str(pair_dir), "--task", "lm,code-search", *TINY_FLAGS]) == 0
    printed = capsys.readouterr().out
    assert "code-search[last]" in printed and "best" in printed
    results = load_results(pair_dir / "eval")
    assert {(r.model, r.row) for r in results} == {
        ("encoder", "lm[masked]"), ("encoder", "lm[pseudo]"), ("encoder", "code-search[mean]"),
        ("decoder", "lm"), ("decoder", "code-search[last]"), ("decoder", "code-search[mean]")}
    assert "![scores](scores.png)" in (pair_dir / "eval" / "report.md").read_text()
    assert is_png(pair_dir / "eval" / "scores.png")


def test_eval_all_checkpoints_of_a_run_plots_score_against_tokens(tmp_path, tokenizer, capsys):
    run = tagged_run(tmp_path / "encoder-run", tokenizer, causal=False)
    out = tmp_path / "out"
    argv = ["eval", str(run), "--all-checkpoints", "--tokenizer", str(Path(tokenizer.source).parent),
            "--task", "lm", "--out", str(out), *TINY_FLAGS]
    assert main(argv) == 0
    results = load_results(out)
    masked = sorted((r.checkpoint, r.tokens) for r in results if r.variant == "masked")
    assert masked == [("step1", 3000), ("step2", 6000)]
    assert "encoder-run@step2" in capsys.readouterr().out
    assert is_png(out / "vs-tokens.png")


@pytest.mark.parametrize("make_argv, message", [
    (lambda d, p: ["eval", str(d)], "not a model directory (no config.json)"),
    (lambda d, p: ["eval", str(p / "encoder"), "--task", "glue"], "unknown task 'glue'; valid tasks: lm, code-search"),
    (lambda d, p: ["eval", str(p / "encoder"), "--all-checkpoints"], "--all-checkpoints needs a training run"),
    (lambda d, p: ["eval", str(p / "encoder"), "--task", "beir", "--beir", str(d)], "no corpus.jsonl"),
    (lambda d, p: ["eval", str(p / "encoder"), "--task", "classification"], "needs --train and --dev"),
    (lambda d, p: ["compare", str(d)], "no evaluation results"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, pair_dir, capsys, make_argv, message):
    assert main(make_argv(tmp_path, pair_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
