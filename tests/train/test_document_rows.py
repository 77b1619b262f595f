"""`layout: documents`: one document chunk per row, as Ettin's published runs (no packing).

A store of known document lengths (each "a" is one token of the tiny tokenizer) trains one
phase; the steps, the rows of each step and the real tokens the trainer counted are compared
with a count by hand: long documents cut to seq_len, chunks under 128 tokens dropped.
"""

import json
from collections import Counter

import pytest

from twofold.data.orderlog import replay_batch
from twofold.data.sources import SourceSpec
from twofold.data.store import TokenStore, prepare_store
from twofold.data.tokenizer import load_tokenizer
from twofold.train import loop, runs
from twofold.train.distributed import World
from twofold.train.recipe import load_recipe

SEQ_LEN = 160
# Document lengths in tokens; with [CLS] and [SEP] they are 2 more (100, 300, 400, …).
LENGTHS = [98, 298, 398, 198, 148, 126, 125]
# By hand, rows as (doc, begin, end) in [CLS] doc [SEP] positions, seq_len 160, at least 128:
ROWS = [
    # doc 0: 100 tokens, under 128: dropped
    (1, 0, 160), (1, 160, 300),  # 300 = 160 + 140
    (2, 0, 160), (2, 160, 320),  # 400 = 160 + 160 + 80 (dropped)
    (3, 0, 160),                 # 200 = 160 + 40 (dropped)
    (4, 0, 150),                 # 150
    (5, 0, 128),                 # 128: kept
    # doc 6: 127 tokens: dropped
]
EPOCH_TOKENS = sum(end - begin for _, begin, end in ROWS)  # 1058

RECIPE = """\
model: tiny
seed: 21
optimizer: {{name: stable_adamw, lr: 1.0e-3, weight_decay: 0.0}}
phase:
  pretrain: {{tokens: {tokens}, seq_len: {seq_len}, layout: documents, min_row_tokens: 128, mask_rate: 0.3,
             lr_warmup_tokens: 1000, batch_sequences: {batch}, checkpoint_every_tokens: 1T, tag: step}}
"""


@pytest.fixture(scope="module")
def known_store(tmp_path_factory, tiny_store):
    folder = tmp_path_factory.mktemp("rows")
    (folder / "docs.jsonl").write_text("".join(json.dumps({"text": " ".join(["a"] * n)}) + "\n" for n in LENGTHS))
    tokenizer = load_tokenizer(tiny_store.parent / "tokenizer")
    prepare_store([SourceSpec(str(folder / "docs.jsonl"))], tokenizer, folder / "store", progress=False)
    assert TokenStore(folder / "store").document_lengths().tolist() == LENGTHS  # the fixture is what it says
    return folder / "store"


def train(tmp_path, store, tokens: int, batch: int):
    recipe_file = tmp_path / "rows.yaml"
    recipe_file.write_text(RECIPE.format(tokens=tokens, seq_len=SEQ_LEN, batch=batch))
    recipe = load_recipe(str(recipe_file))
    run = runs.start(tmp_path / "run", recipe, loop.Options(stores=(str(store),), progress=False), World())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    log = [json.loads(line) for line in (run / "pretrain" / "data_order" / "rank0.jsonl").read_text().splitlines()]
    rows = [tuple(segment[1:]) for record in log for sequence in record["sequences"] for segment in sequence]
    return run, metrics, log, rows


def test_a_batch_of_one_epoch_of_rows_is_every_kept_chunk_and_its_real_tokens(tmp_path, known_store):
    # 7 rows a step = the store's 7 rows of an epoch; 2500 tokens need 3 steps of 1058.
    run, metrics, log, rows = train(tmp_path, known_store, tokens=2500, batch=len(ROWS))
    assert len(metrics) == 3 and [len(record["sequences"]) for record in log] == [7, 7, 7]
    for step in range(3):
        assert sorted(rows[7 * step:7 * step + 7]) == sorted(ROWS)
    assert [m["batch_tokens"] for m in metrics] == [EPOCH_TOKENS] * 3
    assert [m["phase_tokens"] for m in metrics] == [EPOCH_TOKENS * (i + 1) for i in range(3)]
    assert all(len(record["sequences"][j]) == 1 for record in log for j in range(7))  # one document per row
    assert (run / "checkpoints").is_dir() and any(p.name.endswith("-step3") for p in (run / "checkpoints").iterdir())


def test_rows_of_varying_length_count_real_tokens_in_steps_and_schedules(tmp_path, known_store):
    # 3 rows a step: 21 rows (three epochs) and exactly 3 × 1058 tokens end the phase at step 7.
    run, metrics, log, rows = train(tmp_path, known_store, tokens=3 * EPOCH_TOKENS, batch=3)
    assert len(metrics) == 7 and all(len(record["sequences"]) == 3 for record in log)
    for epoch in range(3):
        assert Counter(rows[7 * epoch:7 * epoch + 7]) == Counter(ROWS)
    per_step = [sum(end - begin for _, begin, end in rows[3 * s:3 * s + 3]) for s in range(7)]
    assert len(set(per_step)) > 1  # tokens per step vary
    assert [m["batch_tokens"] for m in metrics] == per_step
    seen = 0
    for m, tokens in zip(metrics, per_step):
        seen += tokens
        assert m["phase_tokens"] == seen
        assert m["lr"] == pytest.approx(1e-3 * min(1.0, seen / 1000), rel=1e-12)  # warmup over 1000 real tokens
    assert seen == 3 * EPOCH_TOKENS
    replayed = replay_batch(run / "pretrain", 4)[0]  # show-batch rebuilds a step from the log
    assert replayed.token_hash == log[4]["hash"]
    assert replayed.num_tokens == per_step[4]


def test_recipe_show_expects_the_published_step_counts(capsys, tmp_path):
    # The published 150m tags end each phase at these steps (jhu-clsp/ettin-encoder-150m).
    from twofold.cli import main
    from twofold.train.schedule import phase_steps

    recipe = load_recipe("ettin", size="150m")
    for phase, published in (("pretrain", 599525), ("extension", 50854), ("decay", 8210)):
        assert recipe.phase[phase].layout == "documents"
        assert phase_steps(recipe.phase[phase]) == pytest.approx(published, rel=1e-3)
    assert main(["recipe", "show", "ettin", "--size", "150m", "--out", str(tmp_path / "r.png")]) == 0
    shown = capsys.readouterr().out
    assert "≈600K at 615 tok/row" in shown and "≈50.8K at 1067 tok/row" in shown and "≈8.21K at 1322 tok/row" in shown
