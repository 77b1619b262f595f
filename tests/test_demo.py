"""The whole demo pipeline at its smallest: tokenizer, stores, a trained pair and cross arm, exports,
evaluation, downstream fine-tunes over seeds with baselines, report. The default demo and its
targets: the slow test at the end."""

import json
import math

import pytest
import torch
import transformers

import twofold
from twofold.data.stdlib import held_out_functions
from twofold.data.store import TokenStore
from twofold.data.tokenizer import load_tokenizer
from twofold.demo.layout import ARMS, CROSS_ARMS, FINE_TUNED_ARMS, DemoLayout
from twofold.demo.run import prepare_corpus, run_demo
from twofold.eval.tasks import QUICK
from twofold.results import METRIC_RANGES, load_results
from twofold.train.rundir import RunDir

PACKAGES = ("json", "email", "collections", "argparse.py", "textwrap")
# The smallest evaluation that still runs every task.
TINY_EVAL = QUICK.replace(lm_tokens=1_000, pseudo_perplexity_tokens=32, max_queries=32, max_examples=64,
                          max_length=64, max_new_tokens=8)
TINY_DOWNSTREAM = {"embed": 32, "classify": 32, "generate": 32, "test": 24}
BASELINES = ("most-frequent token", "unigram", "random", "BM25", "majority", "function name")
# each fine-tune's row in the report
ROWS = {"embed": ("code-search[fine-tuned]", "ndcg@10"), "classify": ("package-classification[fine-tuned]", "accuracy"),
        "generate": ("docstring-generation[fine-tuned]", "chrf")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines = []
    report = run_demo(out, budget=16_000, settings=TINY_EVAL, packages=PACKAGES, progress=False, say=lines.append,
                      seeds=(1, 2), downstream_sizes=TINY_DOWNSTREAM, completion_items=8)
    return DemoLayout(out), report, lines


def test_exports_load_in_transformers_with_the_same_logits(demo):
    layout, _, _ = demo
    ids = torch.randint(5, 500, (2, 40))
    for member, auto in (("encoder", transformers.AutoModelForMaskedLM),
                         ("decoder", transformers.AutoModelForCausalLM)):
        ours = twofold.load(layout.export(member)).eval()
        theirs, info = auto.from_pretrained(layout.export(member), output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]
        with torch.no_grad():
            assert (ours(ids).logits - theirs(input_ids=ids).logits).abs().max() <= 1e-4
        assert transformers.AutoTokenizer.from_pretrained(layout.export(member)).mask_token == "[MASK]"


def test_report_and_plots_exist(demo):
    layout, report, lines = demo
    text = report.read_text()
    for png in ("loss.png", "schedule.png", "scores.png"):
        path = layout.root / png
        assert path.stat().st_size > 5_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({png})" in text
    for section in ("## What this shows, and what it does not", "## Models", "## Scores", "## Samples",
                    "## Training", "## Time", "## Reproduce"):
        assert section in text
    assert any("report:" in line for line in lines)


def score_table(text: str) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """The report's score table: its header's columns, and each (task, metric) row's cells."""
    lines = text.split("## Scores")[1].strip().splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    body = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        body[cells[0], cells[1]] = cells
    return header, body


def test_the_table_has_every_arm_and_baseline_and_error_bars_over_seeds(demo):
    _, report, _ = demo
    header, body = score_table(report.read_text())
    assert set(ARMS) | set(BASELINES) <= set(header)
    column = {name: i for i, name in enumerate(header)}
    # every arm a task suits is fine-tuned with the same recipe: two seeds give mean ± spread in each cell
    for task, row in ROWS.items():
        for arm in ARMS:
            assert ("±" in body[row][column[arm]]) == (arm in FINE_TUNED_ARMS[task]), (row, arm)
    assert body["code-search[fine-tuned]", "ndcg@10"][column["BM25"]]
    assert body["code-search[fine-tuned]", "ndcg@10"][column["random"]]
    assert body["package-classification[fine-tuned]", "accuracy"][column["majority"]]
    assert body["docstring-generation[fine-tuned]", "chrf"][column["function name"]]
    assert all(body["docstring-generation[zero-shot]", "chrf"][column[arm]] for arm in FINE_TUNED_ARMS["generate"])
    assert body["lm[masked]", "mlm_accuracy"][column["most-frequent token"]]
    assert body["lm", "perplexity"][column["unigram"]]
    assert all(body["code-completion", "accuracy"][column[arm]] for arm in ARMS)


def test_the_saved_results_keep_every_seed_of_every_fine_tune(demo):
    layout, _, _ = demo
    saved = load_results(layout.eval)
    for task, (row, _) in ROWS.items():
        name = row.split("[")[0]
        for arm in FINE_TUNED_ARMS[task]:
            assert {r.seed for r in saved if (r.task, r.model, r.variant) == (name, arm, "fine-tuned")} == {1, 2}


def test_training_tokens_are_filled_in_for_every_arm(demo):
    layout, report, _ = demo
    models = report.read_text().split("## Models")[1].split("##")[0]
    rows = {line.split("|")[1].strip(): line for line in models.splitlines() if line.startswith("| ")}
    for arm in ARMS:
        assert "–" not in rows[arm] and "," in rows[arm].split("|")[4], rows[arm]
    tokens = {r.model: r.tokens for r in load_results(layout.eval) if r.model in ARMS}
    trained = {arm: last_tokens(path / "metrics.jsonl") for arm, path in
               (("encoder", layout.pair / "encoder"), ("decoder", layout.pair / "decoder"),
                *((arm, layout.cross(arm)) for arm in CROSS_ARMS))}
    assert tokens["encoder"] == tokens["decoder"] == trained["encoder"] >= 16_000
    for arm, (member, _) in CROSS_ARMS.items():  # the member's tokens and its own of the other objective
        assert trained[arm] > 0 and tokens[arm] == trained[member] + trained[arm], arm
    assert f"{tokens['encoder']:,}" in rows["encoder"]


def last_tokens(metrics) -> int:
    return max(json.loads(line)["tokens"] for line in metrics.read_text().splitlines() if '"tokens"' in line)


def test_each_cross_arm_starts_from_its_member_and_takes_the_other_objective(demo):
    layout, _, _ = demo
    for arm, (member, objective) in CROSS_ARMS.items():
        info = json.loads((layout.cross(arm) / "run.json").read_text())
        assert info["options"]["cross"] and info["options"]["objective"] == objective
        assert info["init_from"] == str((layout.pair / member).resolve())
        model = twofold.load(layout.export(arm))
        assert model.config.causal == (objective == "clm")
        # it really continued the member: its first step's loss is the member's, not a random model's
        first = next(r for r in RunDir(layout.cross(arm)).metrics() if "loss" in r)["loss"]
        assert first < 0.9 * math.log(model.config.vocab_size), (arm, first)


def test_the_demo_recipe_reaches_the_optimizer_and_the_model(demo):
    """The peak learning rates the optimizer was set to, step by step, are the recipe's (members
    and cross arm); with the recipe's dropout of 0 a trained member computes the same in training
    and evaluation mode."""
    from twofold.train.recipe import load_recipe

    layout, _, _ = demo
    recipe = load_recipe("demo")
    for run, peak in ((layout.pair / "encoder", recipe.optimizer.lr), (layout.pair / "decoder", recipe.optimizer.lr),
                      *((layout.cross(arm), recipe.cross.lr) for arm in CROSS_ARMS)):
        assert max(r["lr"] for r in RunDir(run).metrics() if "lr" in r) == pytest.approx(peak)
    assert recipe.dropout.attention_output == 0.0
    model = RunDir(layout.pair / "encoder").model()
    ids = torch.randint(5, 500, (2, 40))
    with torch.no_grad():
        assert torch.equal(model.train()(ids).logits, model.eval()(ids).logits)


def test_every_score_is_in_range_in_the_report_and_the_members_learnt(demo):
    layout, report, _ = demo
    results = load_results(layout.eval)
    scored = [r for r in results if r.metrics and r.kind != "baseline"]
    assert {r.kind for r in scored} == {"encoder", "decoder"}
    table = report.read_text()
    for result in scored:
        for metric, value in result.metrics.items():
            low, high = METRIC_RANGES[metric]
            assert math.isfinite(value) and low <= value <= high, (result.task, metric, value)
            if result.task in ("lm", "code-completion"):  # one value each; fine-tunes show mean ± spread
                assert f"| {value:.4g} |" in table  # the report shows what was measured
    # Trained on 16K tokens, both members predict held-out text clearly better than a uniform
    # guess over the vocabulary, which an untrained model scores (about 2.2K and 2.5K of 4096 here).
    vocab = load_tokenizer(layout.tokenizer).vocab_size
    perplexities = {(r.kind, m): v for r in scored if r.model in ("encoder", "decoder")
                    for m, v in r.metrics.items() if m.endswith("perplexity")}
    assert set(perplexities) == {("encoder", "pseudo_perplexity"), ("decoder", "perplexity")}
    assert all(v < 0.8 * vocab for v in perplexities.values()), (perplexities, vocab)


def test_both_members_trained_on_identical_batches(demo):
    layout, _, _ = demo
    for phase in ("pretrain", "extension", "decay"):
        hashes = [[json.loads(line)["hash"] for line in
                   (layout.pair / member / phase / "data_order" / "rank0.jsonl").read_text().splitlines()]
                  for member in ("encoder", "decoder")]
        assert hashes[0] and hashes[0] == hashes[1]


def test_held_out_functions_are_absent_from_the_training_store(demo):
    layout, _, _ = demo
    store = TokenStore(layout.store)
    tokenizer = load_tokenizer(layout.tokenizer)
    training_text = "\n".join(tokenizer.decode(store.document(i)) for i in range(len(store.doc_ids)))
    functions = held_out_functions()
    assert functions
    assert not [f.name for f in functions if f.code.strip() in training_text]


def test_second_run_reuses_tokenizer_and_stores(demo):
    layout, _, _ = demo
    before = {p: p.stat().st_mtime_ns for p in (layout.tokenizer / "tokenizer.json", layout.store / "manifest.json")}
    lines = []
    prepare_corpus(layout, PACKAGES, progress=False, say=lines.append)
    assert sum("reusing" in line for line in lines) == 3  # tokenizer, train store, held-out store
    assert before == {p: p.stat().st_mtime_ns for p in before}


def test_a_rerun_that_runs_out_of_disk_leaves_the_previous_demo_intact(demo, monkeypatch, capsys):
    import errno

    import twofold.demo.run
    from twofold.cli import main

    layout, report, _ = demo
    before = {p.relative_to(layout.root): p.read_bytes() for p in layout.root.rglob("*") if p.is_file()}

    def full(*args):  # a stage that replaced old output and wrote half of its own
        for old in layout.root.glob("report.md"):
            old.unlink()
        (layout.pair / "encoder").mkdir(parents=True, exist_ok=True)
        (layout.pair / "encoder" / "partial.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(layout.pair / "encoder"))

    monkeypatch.setattr(twofold.demo.run, "start_pair", full)
    assert main(["demo", "--out", str(layout.root), "--budget", "16K", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "No space left on device" in error
    after = {p.relative_to(layout.root): p.read_bytes() for p in layout.root.rglob("*") if p.is_file()}
    assert after == before


# ----------------------------------------------------------------------------- bad input


def test_a_budget_too_small_for_every_phase_is_one_line_and_writes_nothing(tmp_path, capsys):
    from twofold.cli import main
    from twofold.demo.layout import minimum_budget
    from twofold.train.recipe import load_recipe

    least = minimum_budget(load_recipe("demo"))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--budget", str(least - 1), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"--budget {least - 1:,} is too small" in error and f"{least:,}" in error
    assert not out.exists()
    # at the minimum, every phase (cross included) gets at least one full batch
    recipe = load_recipe("demo", budget=least)
    for phase in (*recipe.phases, recipe.cross):
        assert phase.tokens >= phase.batch_sequences * phase.seq_len, phase.name


def test_an_out_holding_a_previous_demo_and_another_run_keeps_them(tmp_path, capsys):
    """A folder that holds another run (here a `twofold train` run's files) is refused whole."""
    from twofold.cli import main

    out = tmp_path / "runs"
    (out / "checkpoints").mkdir(parents=True)
    (out / "run.json").write_text('{"recipe": {}}\n')
    (out / "report.md").write_text("# an earlier report\n")
    before = sorted((p.relative_to(out), p.read_bytes() if p.is_file() else None) for p in out.rglob("*"))
    assert main(["demo", "--out", str(out), "--budget", "16K", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds other files" in error
    assert sorted((p.relative_to(out), p.read_bytes() if p.is_file() else None) for p in out.rglob("*")) == before


@pytest.mark.slow
def test_the_default_demo_meets_its_targets(tmp_path):
    """`make demo` as a user runs it: both members learn, the fine-tuned encoder beats the baselines, the
    generative fine-tune improves both decoders."""
    report = run_demo(tmp_path / "demo", progress=False, say=lambda line: None)
    results = [r for r in load_results(tmp_path / "demo" / "eval") if r.metrics]

    def mean(task, variant, metric, model):
        values = [r.metrics[metric] for r in results if (r.task, r.variant, r.model) == (task, variant, model)]
        assert values, (task, variant, metric, model)
        return sum(values) / len(values)

    assert mean("lm", "masked", "mlm_accuracy", "encoder") >= 0.25
    assert mean("lm", "", "perplexity", "decoder") <= mean("lm", "", "perplexity", "unigram") / 5
    assert mean("code-search", "fine-tuned", "ndcg@10", "encoder") >= 5 * mean("code-search", "fine-tuned",
                                                                                "ndcg@10", "random")
    assert mean("package-classification", "fine-tuned", "accuracy", "encoder") >= \
        mean("package-classification", "fine-tuned", "accuracy", "majority") + 0.15
    assert len({r.seed for r in results if r.task == "code-search" and r.model == "encoder"}) >= 3
    for decoder in ("decoder", "decoder-from-encoder"):  # the generative fine-tune helps beyond the seeds' spread
        before = mean("docstring-generation", "zero-shot", "chrf", decoder)
        after = [r.metrics["chrf"] for r in results
                 if (r.task, r.variant, r.model) == ("docstring-generation", "fine-tuned", decoder)]
        assert len(after) >= 3 and min(after) - before > max(after) - min(after), (decoder, before, after)
    assert "## What this shows, and what it does not" in report.read_text()
