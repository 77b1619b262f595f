"""Dropout as the published recipes train it (attention output 0.1, nothing else), and its random
streams: one per rank, saved and restored per rank, so a SIGKILLed run with dropout on resumes
bit-identically on one process and on two gloo ranks; another number of ranks is refused mid-phase."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from twofold.model import TwofoldModel, attention, preset
from twofold.train import checkpoint, loop, runs
from twofold.train.distributed import World
from twofold.train.recipe import load_recipe

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# Two phases of a tiny model with the published dropout: 12 steps of 256 tokens, then 2 of 512.
DROPOUT_RECIPE = """\
model: tiny
seed: 21
optimizer: {name: stable_adamw, lr: 3.0e-3, betas: [0.9, 0.98], eps: 1.0e-6, weight_decay: 3.0e-4}
dropout: {attention_output: 0.1}
phase:
  pretrain: {tokens: 3K, seq_len: 64, lr_warmup_tokens: 512, batch_sequences: 4, checkpoint_every_tokens: 1K,
             tag: step}
  decay: {tokens: 1K, seq_len: 128, mask_rate: 0.15, lr_decay: one_minus_sqrt, lr_start_ratio: 0.5,
          lr_min_ratio: 0.02, batch_sequences: 4, checkpoint_every_tokens: 1K, tag: decay}
"""


@pytest.fixture(scope="module")
def dropout_recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipes") / "tiny-dropout.yaml"
    path.write_text(DROPOUT_RECIPE)
    return path


# ---------------------------------------------------------------- the model


def test_attention_output_dropout_acts_in_training_only(monkeypatch):
    model = TwofoldModel(preset("tiny", attention_output_dropout=0.1))  # attention_dropout stays 0
    dropped, probability_dropout = [], []
    for layer in model.model.layers:
        layer.attn.out_drop.register_forward_hook(
            lambda module, args, out: dropped.append((module.training, (out == 0).float().mean().item())))
    real = attention.PackedLayout.attend
    monkeypatch.setattr(attention.PackedLayout, "attend", lambda self, q, k, v, layer_idx, local, dropout: (
        probability_dropout.append(dropout), real(self, q, k, v, layer_idx, local, dropout))[1])
    ids = torch.randint(5, 500, (4, 200))

    first, second = model(ids).logits, model(ids).logits  # a fresh model is in training mode
    assert not torch.equal(first, second)
    assert all(training and 0.08 < zeros < 0.12 for training, zeros in dropped)
    assert set(probability_dropout) == {0.0}  # the attention probabilities are never dropped

    dropped.clear()
    model.eval()
    plain = TwofoldModel(preset("tiny")).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(ids).logits, model(ids).logits)
        assert torch.equal(model(ids).logits, plain(ids).logits)
    assert all(not training and zeros == 0 for training, zeros in dropped)


def test_the_trainer_drops_in_training_steps_and_not_in_held_out_evaluation(tmp_path, tiny_store, dropout_recipe):
    seen = []

    def hook(module, args, out):
        if isinstance(module, nn.Dropout) and module.p > 0:
            seen.append((module.training, (out == 0).float().mean().item()))

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        opts = loop.Options(stores=(str(tiny_store),), eval_stores=(str(tiny_store),), eval_sequences=4,
                            progress=False)
        run = runs.start(tmp_path / "run", load_recipe(str(dropout_recipe)), opts, World())
    finally:
        handle.remove()
    model = json.loads((run / "run.json").read_text())["model"]
    assert (model["attention_output_dropout"], model["attention_dropout"], model["mlp_dropout"]) == (0.1, 0.0, 0.0)
    training = [zeros for is_training, zeros in seen if is_training]
    evaluation = [zeros for is_training, zeros in seen if not is_training]
    assert training and evaluation
    assert 0.07 < sum(training) / len(training) < 0.13 and set(evaluation) == {0.0}


# ---------------------------------------------------------------- resume, one process


def train_args(recipe, store, out, *extra):
    return ["train", "--recipe", str(recipe), "--store", str(store), "--out", str(out), "--objective", "mlm",
            "--no-progress", "--save-every-steps", "3", *extra]


def loss_lines(out):
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if '"loss"' in line] if path.exists() else []


def final_weights(out):
    return load_file(str(checkpoint.find_tagged(out / "checkpoints", "decay2") / "model.safetensors"))


def assert_identical(out, reference):
    expected, actual = final_weights(reference), final_weights(out)
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert [line["loss"] for line in loss_lines(out)] == [line["loss"] for line in loss_lines(reference)]


def wait_then_kill(process, out, steps, kill):
    """Once `steps` steps are logged and a checkpoint exists, `kill()`; the run must be unfinished."""
    deadline = time.time() + 180
    while not (len(loss_lines(out)) >= steps and checkpoint.list_checkpoints(out / "checkpoints")):
        assert process.poll() is None, f"training ended before it was killed: {process.stderr.read()[-2000:]}"
        assert time.time() < deadline, "timed out waiting for the run to be killable"
        time.sleep(0.02)
    kill()
    process.wait()
    assert not any(p.name.endswith("decay2") for p in checkpoint.list_checkpoints(out / "checkpoints"))


def run_ok(argv):
    result = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_sigkill_with_dropout_resumes_bit_identical_on_one_process(tmp_path, tiny_store, dropout_recipe):
    reference = tmp_path / "reference"
    run_ok([sys.executable, "-m", "twofold", *train_args(dropout_recipe, tiny_store, reference)])
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "twofold", *train_args(dropout_recipe, tiny_store, out)],
                               env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_then_kill(process, out, steps=5, kill=lambda: process.send_signal(signal.SIGKILL))
    run_ok([sys.executable, "-m", "twofold", "train", "--resume", str(out), "--no-progress"])
    assert_identical(out, reference)


# ---------------------------------------------------------------- resume, two gloo ranks


def torchrun(*args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
            "-m", "twofold", *args]


def descendants(pid):
    """Every process below `pid` (from /proc), children before their own children."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = [int(c) for tid in os.listdir(f"/proc/{parent}/task")
                        for c in open(f"/proc/{parent}/task/{tid}/children").read().split()]
        except FileNotFoundError:
            continue
        found += children
        frontier += children
    return found


def kill_every_rank(agent):
    """SIGKILL the ranks first (so none can finish a step), then torchrun itself."""
    ranks = descendants(agent.pid)
    assert len(ranks) >= 2, f"torchrun has {len(ranks)} worker processes"
    for pid in ranks:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    agent.send_signal(signal.SIGKILL)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, tiny_store, dropout_recipe):
    """A finished two-rank run, and one SIGKILLed in the middle of its first phase."""
    root = tmp_path_factory.mktemp("two-ranks")
    reference, killed = root / "reference", root / "killed"
    run_ok(torchrun(*train_args(dropout_recipe, tiny_store, reference)))
    agent = subprocess.Popen(torchrun(*train_args(dropout_recipe, tiny_store, killed)), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_then_kill(agent, killed, steps=5, kill=lambda: kill_every_rank(agent))
    time.sleep(0.2)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in descendants(agent.pid))
    return reference, killed


def test_each_rank_keeps_its_own_stream(two_ranks):
    _, killed = two_ranks
    saved = checkpoint.load(checkpoint.list_checkpoints(killed / "checkpoints")[-1], restore_rng=False)
    assert len(saved.rng) == 2 and saved.progress["phase_index"] == 0  # killed inside the first phase
    assert not torch.equal(saved.rng[0][0]["torch"], saved.rng[1][0]["torch"])


def test_sigkill_of_every_rank_with_dropout_resumes_bit_identical(tmp_path, two_ranks):
    reference, killed = two_ranks
    out = tmp_path / "resumed"
    shutil.copytree(killed, out)
    assert len(loss_lines(out)) < len(loss_lines(reference))
    run_ok(torchrun("train", "--resume", str(out), "--no-progress"))
    assert_identical(out, reference)


def test_another_world_size_mid_phase_with_dropout_is_refused_then_reseeded(tmp_path, two_ranks):
    _, killed = two_ranks
    out = tmp_path / "one-process"
    shutil.copytree(killed, out)
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    result = subprocess.run([sys.executable, "-m", "twofold", "train", "--resume", str(out), "--no-progress"],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    error = result.stderr.strip()
    assert "written by 2 rank(s) with dropout on" in error and "--reseed-rng" in error and "\n" not in error
    after = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before  # nothing written, nothing lost

    result = run_ok([sys.executable, "-m", "twofold", "train", "--resume", str(out), "--no-progress", "--reseed-rng"])
    assert "fresh per-rank streams" in result.stderr
    assert checkpoint.find_tagged(out / "checkpoints", "decay2")
