"""A micro-batch that fits by default: chosen from the memory estimate against the memory at
hand (TWOFOLD_MEMORY_BYTES here), equal in what it trains to the same micro-batch given
explicitly, kept on resume; an explicit one that cannot fit is refused before anything is
written; on a GPU a step that runs out of memory is taken again with half the micro-batch."""

import json
import re
import time

import pytest
import torch
from safetensors.torch import load_file

from twofold.cli import main
from twofold.errors import TwofoldError
from twofold.model import preset
from twofold.train import checkpoint, loop, microbatch, progress, runs
from twofold.train.distributed import World
from twofold.train.recipe import load_recipe

# Two phases of the same shape (64-token sequences, 30% masked), 8 sequences a step.
RECIPE = """\
model: tiny
seed: 21
optimizer: {name: stable_adamw, lr: 3.0e-3, betas: [0.9, 0.98], eps: 1.0e-6, weight_decay: 3.0e-4}
dropout: {attention_output: 0.1}
phase:
  pretrain: {tokens: 2048, seq_len: 64, mask_rate: 0.3, lr_warmup_tokens: 512, batch_sequences: 8,
             checkpoint_every_tokens: 1024, tag: step}
  decay: {tokens: 1024, seq_len: 64, mask_rate: 0.3, lr_decay: linear, lr_min_ratio: 0.1, batch_sequences: 8,
          checkpoint_every_tokens: 1024, tag: decay}
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "two-phases.yaml"
    path.write_text(RECIPE)
    return load_recipe(str(path))


def memory_for_sequences(recipe, store, sequences: float) -> int:
    """TWOFOLD_MEMORY_BYTES under which `sequences` (fractional: room to spare) micro-batch sequences fit."""
    config, _ = runs.initial_model(recipe, loop.Options(stores=(str(store),)), None)
    phase = recipe.phases[0]
    one = microbatch.activation_bytes(config, 1, phase.seq_len, phase.mask_rate, bf16=False)
    return int((microbatch.state_bytes(microbatch.parameter_count(config)) + sequences * one) / microbatch.MARGIN)


def train(tmp_path, store, recipe, name, **options):
    opts = loop.Options(stores=(str(store),), objective="mlm", **{"progress": False, **options})
    return runs.start(tmp_path / name, recipe, opts, World())


def steps(run):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if "loss" in line]


def final(run, tag="decay2"):
    return load_file(str(checkpoint.find_tagged(run / "checkpoints", tag) / "model.safetensors"))


def test_low_memory_chooses_the_micro_batch_that_fits_and_trains_the_same_weights(tmp_path, tiny_store, recipe,
                                                                                  monkeypatch, capsys):
    monkeypatch.setenv(microbatch.MEMORY_ENV, str(memory_for_sequences(recipe, tiny_store, 3.5)))
    auto = train(tmp_path, tiny_store, recipe, "auto")
    lines = steps(auto)
    assert {(line["batch_sequences"], line["micro_batch_sequences"]) for line in lines} == {(8, 3)}
    assert "phase pretrain: 3 of this rank's 8 sequences per forward pass" in capsys.readouterr().err
    assert checkpoint.load(checkpoint.find_tagged(auto / "checkpoints", "decay2")).progress["micro_batches"] == {
        "pretrain": 3, "decay": 3}

    monkeypatch.delenv(microbatch.MEMORY_ENV)
    explicit = train(tmp_path, tiny_store, recipe, "explicit", micro_batch_sequences=3)
    whole = train(tmp_path, tiny_store, recipe, "whole", micro_batch_sequences=8)
    assert [line["loss"] for line in steps(auto)] == [line["loss"] for line in steps(explicit)]
    a, b, c = final(auto), final(explicit), final(whole)
    assert all(torch.equal(a[name], b[name]) for name in a)
    # the fixture can tell micro-batches apart: one pass of 8 sums in another order
    assert not all(torch.equal(a[name], c[name]) for name in a)


def test_ample_memory_takes_the_whole_step_in_one_pass(tmp_path, tiny_store, recipe, monkeypatch):
    monkeypatch.setenv(microbatch.MEMORY_ENV, str(memory_for_sequences(recipe, tiny_store, 100)))
    assert {line["micro_batch_sequences"] for line in steps(train(tmp_path, tiny_store, recipe, "run"))} == {8}


def test_resume_keeps_the_micro_batch_it_chose(tmp_path, tiny_store, recipe, monkeypatch):
    class Stop(Exception):
        pass

    real_save, saves = loop.Trainer._save, []

    def save_then_stop(self, tag, loader):
        real_save(self, tag, loader)
        saves.append(tag)
        if len(saves) == 1:  # the step1024 checkpoint, in the middle of pretraining
            raise Stop

    monkeypatch.setenv(microbatch.MEMORY_ENV, str(memory_for_sequences(recipe, tiny_store, 3.5)))
    monkeypatch.setattr(loop.Trainer, "_save", save_then_stop)
    with pytest.raises(Stop):
        train(tmp_path, tiny_store, recipe, "run")
    # the machine has more memory now: pretraining goes on with its 3, the decay phase chooses anew
    monkeypatch.setenv(microbatch.MEMORY_ENV, str(memory_for_sequences(recipe, tiny_store, 5.5)))
    runs.resume(tmp_path / "run", World(), {"progress": False})
    chosen = {(line["phase"], line["micro_batch_sequences"]) for line in steps(tmp_path / "run")}
    assert chosen == {("pretrain", 3), ("decay", 5)} and len(steps(tmp_path / "run")) == 6


def test_an_explicit_micro_batch_that_cannot_fit_is_refused_before_anything_is_written(tmp_path, tiny_store, recipe,
                                                                                       monkeypatch, capsys):
    monkeypatch.setenv(microbatch.MEMORY_ENV, str(memory_for_sequences(recipe, tiny_store, 3.5)))
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    argv = ["train", "--recipe", str(path), "--store", str(tiny_store), "--no-progress"]
    for who in (["--pair"], ["--objective", "mlm"]):
        out = tmp_path / who[-1]
        assert main([*argv, *who, "--micro-batch", "6", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--micro-batch 6: phase pretrain: 6 sequence(s) of 64 tokens" in err
        assert "GiB (activations and optimizer state, estimated)" in err and microbatch.MEMORY_ENV in err
        assert not out.exists()
    # and where not even one sequence fits, the chosen micro-batch is refused the same way
    monkeypatch.setenv(microbatch.MEMORY_ENV, str(memory_for_sequences(recipe, tiny_store, 0.5)))
    assert main([*argv, "--objective", "mlm", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "phase pretrain: 1 sequence(s) of 64 tokens per forward pass need about" in err and err.count("\n") == 1
    assert not (tmp_path / "none").exists()


def test_the_estimate_grows_with_tokens_targets_and_shape():
    small, wide = preset("ettin-17m"), preset("ettin-68m")
    mlm = lambda sequences: microbatch.activation_bytes(small, sequences, 1024, 0.3, bf16=False)  # noqa: E731
    # linear in the tokens once the targets fill a chunk of logits (666 rows of 50,368)
    assert mlm(4) < mlm(8) and mlm(8) - mlm(4) == pytest.approx(mlm(12) - mlm(8), rel=1e-6)
    assert microbatch.activation_bytes(small, 4, 1024, 1.0, bf16=False) > mlm(4)  # CLM predicts every token
    assert microbatch.activation_bytes(small, 4, 1024, 0.3, bf16=True) < mlm(4)
    assert microbatch.activation_bytes(wide, 4, 1024, 0.3, bf16=False) > 2 * mlm(4)


@pytest.mark.parametrize("value,expected", [("24G", 24 * 2**30), ("512MiB", 512 * 2**20), ("8.5e9", 8_500_000_000),
                                            ("2_000", 2000)])
def test_the_memory_knob_reads_sizes(monkeypatch, value, expected):
    monkeypatch.setenv(microbatch.MEMORY_ENV, value)
    assert microbatch.available_memory(torch.device("cpu")) == microbatch.Memory(expected, microbatch.MEMORY_ENV)


@pytest.mark.parametrize("value", ["lots", "-1G", "0", "nan"])
def test_a_bad_memory_knob_is_one_line(monkeypatch, value):
    monkeypatch.setenv(microbatch.MEMORY_ENV, value)
    with pytest.raises(TwofoldError, match=f"{microbatch.MEMORY_ENV}=.* is not a memory size"):
        microbatch.available_memory(torch.device("cpu"))


def test_the_probe_reads_meminfo_and_the_cgroup_limit(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n")
    assert microbatch._meminfo(str(meminfo)).bytes == 20_000_000 * 1024
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("max\n")
    (v2 / "memory.current").write_text("123\n")
    assert microbatch._cgroup_room(str(v2)) is None  # no limit
    (v2 / "memory.max").write_text("8589934592\n")
    (v2 / "memory.current").write_text("1073741824\n")
    assert microbatch._cgroup_room(str(v2)).bytes == 7 * 2**30
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("4294967296\n")
    (v1 / "memory.usage_in_bytes").write_text("1073741824\n")
    assert microbatch._cgroup_room(str(tmp_path / "v1")).bytes == 3 * 2**30
    assert microbatch._meminfo(str(tmp_path / "missing")) is None


# ------------------------------------------------------------ halving on out-of-memory (a GPU's)
# There is no GPU here: torch.cuda.OutOfMemoryError raised by a fake step stands in for the real
# one (benchmarks/gpu_microbatch_check.py runs the real thing on CUDA).


def test_halving_retries_with_half_the_sequences_until_a_step_passes():
    tried, undone = [], []

    def attempt(sequences):
        tried.append(sequences)
        if sequences > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")
        return "passed"

    assert microbatch.halving(attempt, 48, undone.append) == ("passed", 3)
    assert tried == [48, 24, 12, 6, 3] and undone == [24, 12, 6, 3]

    def never(sequences):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")

    with pytest.raises(TwofoldError, match="one sequence per forward pass does not fit in GPU memory"):
        microbatch.halving(never, 4, lambda _: None)


def test_a_step_out_of_memory_is_taken_again_with_half_and_equals_the_explicit_run(tmp_path, tiny_store, recipe,
                                                                                   monkeypatch, capsys):
    real = loop.forward

    def runs_out_above_two(model, batch):
        out = real(model, batch)  # the forward ran (and drew its dropout) before memory ran out
        if batch.num_sequences > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")
        return out

    monkeypatch.setattr(microbatch, "recovers", lambda device: True)
    monkeypatch.setattr(loop, "forward", runs_out_above_two)
    halved = train(tmp_path, tiny_store, recipe, "halved")
    assert {line["micro_batch_sequences"] for line in steps(halved)} == {2}
    err = capsys.readouterr().err
    assert "phase pretrain: out of GPU memory; trying 4 sequences per forward pass" in err
    assert "trying 2 sequences" in err
    monkeypatch.setattr(loop, "forward", real)
    explicit = train(tmp_path, tiny_store, recipe, "explicit", micro_batch_sequences=2)
    assert [line["loss"] for line in steps(halved)] == [line["loss"] for line in steps(explicit)]
    a, b = final(halved), final(explicit)
    assert all(torch.equal(a[name], b[name]) for name in a)


# ------------------------------------------------------------ a long step shows life


@pytest.mark.parametrize("bar", [False, True])
def test_a_long_step_reports_its_micro_batches(tmp_path, tiny_store, recipe, monkeypatch, capsys, bar):
    monkeypatch.setattr(progress, "LIFE_SECONDS", 0.0)  # every step counts as long
    train(tmp_path, tiny_store, recipe, "long", micro_batch_sequences=2, progress=bar)
    err = capsys.readouterr().err
    if bar:  # on the bar, in place of step/loss while the step runs
        assert "step 1: 3/4 micro-batches" in err and "step 6: 3/4 micro-batches" in err
    else:
        said = [re.sub(r"\d+ s into", "N s into", line) for line in err.splitlines() if "micro-batches" in line]
        for step, phase in ((1, "pretrain"), (6, "decay")):
            mine = [line for line in said if line.startswith(f"twofold: {phase} step {step}: ")]
            counted = [line for line in mine if "0/4" not in line]  # the watcher may also say 0/4
            assert sorted(set(counted)) == [f"twofold: {phase} step {step}: {k}/4 micro-batches done, "
                                            "N s into the step" for k in (1, 2, 3)]


def test_one_long_micro_batch_shows_life_too(tmp_path, tiny_store, recipe, monkeypatch, capsys):
    real = loop.forward

    def slow(model, batch):
        time.sleep(0.8)
        return real(model, batch)

    monkeypatch.setattr(progress, "LIFE_SECONDS", 0.3)
    monkeypatch.setattr(loop, "forward", slow)
    train(tmp_path, tiny_store, recipe, "slow")  # the whole step in one forward pass
    said = [line for line in capsys.readouterr().err.splitlines() if "micro-batches" in line]
    assert any(line.startswith("twofold: pretrain step 1: 0/1 micro-batches done") for line in said)
    assert all("1/1" not in line for line in said)  # a finished step says nothing more


def test_a_quick_step_says_nothing_more(tmp_path, tiny_store, recipe, capsys):
    train(tmp_path, tiny_store, recipe, "quick", micro_batch_sequences=2)
    assert "micro-batches" not in capsys.readouterr().err
