"""Checkpoints: complete round trip, checksums with fallback, retention, disk full."""

import errno
import json
import random

import numpy as np
import pytest
import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from twofold.errors import TwofoldError
from twofold.train import checkpoint
from twofold.train.checkpoint import (
    CheckpointWarning,
    CorruptCheckpoint,
    capture,
    find_tagged,
    list_checkpoints,
    load,
    load_latest,
    save,
    verify,
)
from twofold.train.optim import build_optimizer
from twofold.train.recipe import OptimizerConfig


def tiny_model(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Embedding(13, 8), nn.LayerNorm(8), nn.Linear(8, 13))
    model[2].weight = model[0].weight  # tied like the vocab projection
    return model


def train(model, opt, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randint(0, 13, (6,), generator=generator)).logsumexp(-1).mean().backward()
        opt.step()


def save_step(root, model, opt, step, tag=None, keep_last=2):
    return save(root, step=step, states=capture(model, opt), progress={"tokens": step * 100, "phase": "pretrain"},
                data={"batches": step, "fingerprint": "abc"}, config={"model": "tiny"},
                recipe={"name": "demo"}, tag=tag, keep_last=keep_last)


@pytest.mark.parametrize("name", ["stable_adamw", "adamw"])
def test_round_trip_is_complete_and_exact(tmp_path, name):
    config = OptimizerConfig(name=name, lr=1e-2, weight_decay=1e-2)
    model = tiny_model()
    opt = build_optimizer(model, config)
    train(model, opt, 3, seed=1)
    random.seed(5), np.random.seed(6), torch.manual_seed(7)
    path = save_step(tmp_path, model, opt, step=3, tag="step1")
    expected_draws = (random.random(), np.random.rand(), torch.rand(1).item())
    train(model, opt, 2, seed=2)
    expected_weights = [p.detach().clone() for p in model.parameters()]

    fresh = tiny_model(seed=99)
    fresh_opt = build_optimizer(fresh, config)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    restored = load(path, fresh, fresh_opt)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected_draws
    assert fresh[2].weight is fresh[0].weight  # still tied
    assert (restored.step, restored.tag, restored.progress, restored.data) == (
        3, "step1", {"tokens": 300, "phase": "pretrain"}, {"batches": 3, "fingerprint": "abc"})
    assert restored.config == {"model": "tiny"} and restored.recipe == {"name": "demo"}
    assert restored.version == checkpoint.__version__
    train(fresh, fresh_opt, 2, seed=2)
    for a, b in zip(fresh.parameters(), expected_weights):
        assert torch.equal(a, b)


def test_files_never_pickled_and_checksummed(tmp_path):
    model = tiny_model()
    path = save_step(tmp_path, model, build_optimizer(model, OptimizerConfig()), step=1)
    names = sorted(p.name for p in path.iterdir())
    assert names == ["checksums.json", "model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
    assert sorted(json.loads((path / "checksums.json").read_text())) == names[1:]
    verify(path)


def corrupt(path, how):
    target = path / "model.safetensors"
    data = bytearray(target.read_bytes())
    if how == "flip":
        data[-3] ^= 0xFF
        target.write_bytes(bytes(data))
    elif how == "truncate":
        target.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "missing-checksums":
        (path / "checksums.json").unlink()


@pytest.mark.parametrize("how", ["flip", "truncate", "missing-checksums"])
def test_corrupt_latest_falls_back_to_previous_with_a_warning(tmp_path, how):
    model = tiny_model()
    opt = build_optimizer(model, OptimizerConfig())
    first = save_step(tmp_path, model, opt, step=1)
    train(model, opt, 1, seed=3)
    latest = save_step(tmp_path, model, opt, step=2)
    corrupt(latest, how)
    with pytest.raises(CorruptCheckpoint):
        verify(latest)
    with pytest.raises(CorruptCheckpoint):
        load(latest, tiny_model())
    with pytest.warns(CheckpointWarning, match=f"resuming from {first.name} instead: checkpoint {latest}"):
        restored = load_latest(tmp_path, tiny_model(), None)
    assert restored.step == 1


def test_every_checkpoint_corrupt_is_an_error(tmp_path):
    model = tiny_model()
    corrupt(save_step(tmp_path, model, None, step=1), "flip")
    with pytest.raises(TwofoldError, match="no intact checkpoint in .*000000001"):
        load_latest(tmp_path, model)
    assert load_latest(tmp_path / "nothing-here", model) is None


def test_retention_keeps_the_last_k_and_every_tag(tmp_path):
    model = tiny_model()
    for step in range(1, 8):
        save_step(tmp_path, model, None, step=step, tag="step1" if step == 2 else "ext3" if step == 4 else None,
                  keep_last=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["000000002-step1", "000000004-ext3", "000000006", "000000007"]
    assert find_tagged(tmp_path, "ext3").name == "000000004-ext3"
    with pytest.raises(TwofoldError, match="no checkpoint tagged 'decay1'.*tags: step1, ext3"):
        find_tagged(tmp_path, "decay1")


def test_disk_full_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = tiny_model()
    opt = build_optimizer(model, OptimizerConfig())
    previous = save_step(tmp_path, model, opt, step=1)

    written = []

    def full(tensors, path, metadata=None):  # the second file of the checkpoint meets a full disk
        if written:  # safetensors reports it as its own error type, as it does on a real full disk
            raise SafetensorError(f"Error while serializing: I/O error: No space left on device (os error "
                                  f"{errno.ENOSPC})")
        written.append(path)
        real(tensors, path, metadata=metadata)

    real = safetensors.torch.save_file
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(TwofoldError) as error:
        save_step(tmp_path, model, opt, step=2)
    message = str(error.value)
    assert "disk full" in message and previous.name in message and "\n" not in message
    assert written and list(tmp_path.iterdir()) == [previous]  # no half-written .tmp-* directory left behind
    verify(previous)


def test_stale_temporary_directories_are_ignored_and_cleaned(tmp_path):
    model = tiny_model()
    stale = tmp_path / ".tmp-000000005-1234"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    assert list_checkpoints(tmp_path) == []
    save_step(tmp_path, model, None, step=6)
    assert not stale.exists()


def test_saving_the_same_step_again_replaces_it(tmp_path):
    model = tiny_model()
    save_step(tmp_path, model, None, step=3, tag="step1")
    with torch.no_grad():
        model[1].weight.fill_(2.0)
    path = save_step(tmp_path, model, None, step=3, tag="step1")
    fresh = tiny_model(seed=5)
    load(path, fresh)
    assert torch.equal(fresh[1].weight, torch.full((8,), 2.0))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_loading_into_a_different_model_is_a_clear_error(tmp_path):
    path = save_step(tmp_path, tiny_model(), None, step=1)
    with pytest.raises(TwofoldError, match="does not fit the model"):
        load(path, nn.Sequential(nn.Embedding(13, 8)))
    with pytest.raises(TwofoldError, match="not a checkpoint directory"):
        load(tmp_path / "nope")
