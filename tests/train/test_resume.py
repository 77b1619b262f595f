"""Exact resume, for real: a `twofold train` process is SIGKILLed and resumed; the final
weights must equal, bit for bit, those of a run that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from twofold.train import checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# Runs `twofold train` with checkpoint._replace slowed down at the N-th checkpoint, after its
# files are written and before it is renamed into place, and announces that moment in FLAG.
SLOW_CHECKPOINT = """
import pathlib, sys, time
import twofold.train.checkpoint as c
flag, nth, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
real, seen = c._replace, []
def slow(temp, final):
    seen.append(final)
    if len(seen) == nth:
        pathlib.Path(flag).write_text(str(temp))
        time.sleep(600)
    real(temp, final)
c._replace = slow
from twofold.cli import main
sys.exit(main(argv))
"""

# Runs `twofold train` and stops it for good at its first checkpoint, before anything of it is
# written (announced in FLAG): the state an OOM kill leaves in a long first step.
PAUSE_BEFORE_FIRST_CHECKPOINT = """
import pathlib, sys, time
import twofold.train.checkpoint as c
flag, argv = sys.argv[1], sys.argv[2:]
def pause(*args, **kwargs):
    pathlib.Path(flag).write_text("about to write the first checkpoint")
    time.sleep(600)
c.save = pause
from twofold.cli import main
sys.exit(main(argv))
"""


def train_args(recipe, store, out):
    return ["train", "--recipe", str(recipe), "--store", str(store), "--out", str(out), "--objective", "mlm",
            "--no-progress", "--save-every-steps", "2", "--keep-last", "2"]


def run(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "twofold", *args], env=ENV, capture_output=True, text=True,
                          timeout=300, **kwargs)


def wait_for(condition, process, what):
    deadline = time.time() + 120
    while not condition():
        assert process.poll() is None, f"training ended before {what}: {process.stderr.read()}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def loss_lines(out):
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if '"loss"' in line] if path.exists() else []


def final_weights(out):
    return load_file(str(checkpoint.find_tagged(out / "checkpoints", "decay2") / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_store, tiny_recipe):
    out = tmp_path_factory.mktemp("resume") / "reference"
    result = run(train_args(tiny_recipe, tiny_store, out))
    assert result.returncode == 0, result.stderr
    return out


def assert_identical(out, reference):
    expected, actual = final_weights(reference), final_weights(out)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert [line["loss"] for line in loss_lines(out)] == [line["loss"] for line in loss_lines(reference)]


def test_sigkill_mid_training_then_resume_is_bit_identical(tmp_path, tiny_store, tiny_recipe, reference):
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "twofold", *train_args(tiny_recipe, tiny_store, out)],
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(loss_lines(out)) >= 9, process, "step 9")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not checkpoint.list_checkpoints(out / "checkpoints")[-1].name.endswith("decay2")
    result = run(["train", "--resume", str(out), "--no-progress"])
    assert result.returncode == 0, result.stderr
    assert_identical(out, reference)


def test_sigkill_before_the_first_checkpoint_then_resume_starts_from_the_beginning(tmp_path, tiny_store, tiny_recipe,
                                                                                   reference):
    out, flag = tmp_path / "killed-early", tmp_path / "paused"
    argv = [sys.executable, "-c", PAUSE_BEFORE_FIRST_CHECKPOINT, str(flag), *train_args(tiny_recipe, tiny_store, out)]
    process = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(flag.exists, process, "the first checkpoint")
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL  # really killed, as the OOM killer does
    # what it leaves: the run's record, its first steps' batch order and metrics, no checkpoint
    assert (out / "run.json").is_file() and not checkpoint.list_checkpoints(out / "checkpoints")
    assert len((out / "pretrain" / "data_order" / "rank0.jsonl").read_text().splitlines()) == 2
    assert len(loss_lines(out)) == 2
    result = run(["train", "--resume", str(out), "--no-progress"])
    assert result.returncode == 0, result.stderr
    assert_identical(out, reference)  # from the beginning: the same steps, losses and weights


def test_sigkill_during_a_checkpoint_write_and_a_corrupt_latest(tmp_path, tiny_store, tiny_recipe, reference):
    out, flag = tmp_path / "killed-while-saving", tmp_path / "saving"
    argv = [sys.executable, "-c", SLOW_CHECKPOINT, str(flag), "4", *train_args(tiny_recipe, tiny_store, out)]
    process = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(flag.exists, process, "the 4th checkpoint write")
    process.send_signal(signal.SIGKILL)
    process.wait()
    half_written = flag.read_text()
    assert os.path.isdir(half_written)  # killed with the checkpoint written but not yet in place
    saved = checkpoint.list_checkpoints(out / "checkpoints")
    assert len(saved) == 2  # keep-last 2 of the three finished ones (none tagged yet)
    # And the newest finished checkpoint is damaged too: resume must fall back past it.
    model_file = saved[-1] / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:-8])
    result = run(["train", "--resume", str(out), "--no-progress"])
    assert result.returncode == 0, result.stderr
    assert f"resuming from {saved[0].name} instead" in result.stderr
    assert not os.path.exists(half_written)
    assert_identical(out, reference)
