"""Checkpoints: complete round trip, checksums with fallback, retention, disk full."""

import errno
import json
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from twofold.errors import TwofoldError
from twofold.train import checkpoint, rng
from twofold.train.checkpoint import (
    CheckpointWarning,
    CorruptCheckpoint,
    States,
    capture,
    find_tagged,
    list_checkpoints,
    load,
    load_latest,
    newest_intact,
    read_state,
    restore,
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
    assert restored.step == 1 and restored.path == first
    with pytest.warns(CheckpointWarning, match=f"^using {first.name} instead: checkpoint {latest}"):
        assert newest_intact(tmp_path) == first


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
    assert f": disk full; the previous checkpoint {previous.name} is intact;" in message and "\n" not in message
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
    with pytest.raises(TwofoldError, match=f"^checkpoint {re.escape(str(path))} does not fit the model"):
        load(path, nn.Sequential(nn.Embedding(13, 8)))
    with pytest.raises(TwofoldError, match="^checkpoint does not fit the model"):
        restore(capture(tiny_model()), nn.Sequential(nn.Embedding(13, 8)))
    with pytest.raises(TwofoldError, match="not a checkpoint directory"):
        load(tmp_path / "nope")


def assert_same_optimizer_state(a, b):
    """Two optimizers' `state_dict()`s hold equal tensors, numbers and param groups."""
    a, b = a.state_dict(), b.state_dict()
    as_lists = [[{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in s["param_groups"]]
                for s in (a, b)]  # JSON gives betas back as a list, which reads the same
    assert as_lists[0] == as_lists[1]
    assert a["state"].keys() == b["state"].keys()
    for param, entry in a["state"].items():
        assert entry.keys() == b["state"][param].keys(), param
        for name, value in entry.items():
            other = b["state"][param][name]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, (param, name)


def test_load_latest_restores_the_model_the_optimizer_and_the_rng(tmp_path):
    """By default the newest checkpoint's weights, optimizer state and RNG all come back;
    `restore_rng=False` leaves this process's RNG alone."""
    model = tiny_model()
    opt = build_optimizer(model, OptimizerConfig())
    train(model, opt, 2, seed=1)
    torch.manual_seed(7)
    save_step(tmp_path, model, opt, step=2)
    expected_draw = torch.rand(3)

    fresh = tiny_model(seed=99)
    fresh_opt = build_optimizer(fresh, OptimizerConfig())
    torch.manual_seed(0)
    load_latest(tmp_path, fresh, fresh_opt)
    assert torch.equal(torch.rand(3), expected_draw)
    for a, b in zip(fresh.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert_same_optimizer_state(fresh_opt, opt)

    torch.manual_seed(0)
    own_draw = torch.rand(3)
    torch.manual_seed(0)
    load_latest(tmp_path, fresh, fresh_opt, restore_rng=False)
    assert torch.equal(torch.rand(3), own_draw)


def test_load_without_a_model_returns_the_states_and_every_ranks_rng(tmp_path):
    """`load(path)` hands back the weights (tied names included), the optimizer tensors and
    each rank's RNG streams in rank order, as rank 0 gathered them."""
    model = tiny_model()
    opt = build_optimizer(model, OptimizerConfig())
    train(model, opt, 2, seed=1)
    streams = []
    for seed in (11, 12):  # two ranks' streams
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        streams.append(rng.capture())
    path = save(tmp_path, step=2, states=capture(model, opt), progress={}, data={}, config={}, recipe={},
                streams=streams)

    restored = load(path, restore_rng=False)
    weights = model.state_dict()
    assert restored.states.model.keys() == weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(restored.states.model[name], tensor), name
    saved_moments = {(p, n): v for p, e in capture(model, opt).optimizer["state"].items() for n, v in e.items()}
    loaded_moments = {(p, n): v for p, e in restored.states.optimizer["state"].items() for n, v in e.items()}
    assert saved_moments.keys() == loaded_moments.keys()
    for key, value in saved_moments.items():
        assert torch.equal(loaded_moments[key], value), key
    assert len(restored.rng) == 2
    for (tensors, rest), (saved_tensors, saved_rest) in zip(restored.rng, streams, strict=True):
        assert tensors.keys() == saved_tensors.keys() and rest == saved_rest
        for name, tensor in tensors.items():
            assert torch.equal(tensor, saved_tensors[name]), name


class CountingSGD(torch.optim.SGD):
    """SGD that also counts each parameter's updates in a Python int: optimizer state that is not
    a tensor (SparseAdam's and LBFGS's step counts are plain numbers too)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.state[p]["updates"] = self.state[p].get("updates", 0) + 1
        return loss


def counting_sgd(model):
    # with momentum the first Linear's state holds tensors and numbers, without it the second's only numbers
    return CountingSGD([{"params": model[0].parameters(), "momentum": 0.9},
                        {"params": model[1].parameters(), "momentum": 0.0}], lr=0.1)


def test_optimizer_state_that_is_not_a_tensor_round_trips(tmp_path):
    """Python numbers in the optimizer state (beside tensors, or alone) come back per parameter."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    opt = counting_sgd(model)
    for updates in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).square().sum().backward()
        opt.step()
        if updates == 0:  # the last bias stops learning: its count stays behind
            model[1].bias.requires_grad_(False)
            model[1].bias.grad = None
    path = save(tmp_path, step=3, states=capture(model, opt), progress={}, data={}, config={}, recipe={})

    torch.manual_seed(1)
    fresh = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    fresh_opt = counting_sgd(fresh)
    load(path, fresh, fresh_opt)
    assert_same_optimizer_state(fresh_opt, opt)
    assert [fresh_opt.state[p]["updates"] for p in fresh.parameters()] == [3, 3, 3, 1]


@pytest.mark.parametrize("arrive", ["sharing storage", "as separate copies", "as separate copies, with an optimizer"])
def test_tied_weights_are_stored_once_and_restored_tied(tmp_path, arrive):
    """Tied weights are written once whether they reach `save` as one tensor (a plain state dict)
    or as separate copies (FSDP2's full state dict gathers each name apart), and load back tied."""
    model = tiny_model()
    if arrive == "sharing storage":
        states = States(model.state_dict())
    else:
        captured = capture(model, build_optimizer(model, OptimizerConfig()) if "optimizer" in arrive else None)
        states = States({name: tensor.clone() for name, tensor in captured.model.items()}, tied=captured.tied)
    path = save(tmp_path, step=1, states=states, progress={}, data={}, config={}, recipe={})

    stored = safetensors.torch.load_file(str(path / "model.safetensors"))
    assert sorted(stored) == ["0.weight", "1.bias", "1.weight", "2.bias"]
    fresh = tiny_model(seed=3)
    load(path, fresh)
    assert fresh[2].weight is fresh[0].weight
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_save_creates_the_root_and_keeps_the_last_two_by_default(tmp_path):
    """A root that does not exist yet is made with its parents; untagged, two checkpoints stay."""
    root = tmp_path / "run" / "checkpoints"
    model = tiny_model()
    for step in (1, 2, 3):
        save(root, step=step, states=capture(model), progress={}, data={}, config={}, recipe={})
    assert [p.name for p in list_checkpoints(root)] == ["000000002", "000000003"]


@pytest.mark.parametrize("keep_last", [1, 0])
def test_keep_last_one_or_less_keeps_exactly_the_newest(tmp_path, keep_last):
    """keep_last 1 keeps only the newest untagged checkpoint (0 is taken as 1: never none)."""
    model = tiny_model()
    for step in (1, 2, 3):
        save_step(tmp_path, model, None, step=step, tag="step1" if step == 1 else None, keep_last=keep_last)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["000000001-step1", "000000003"]


def test_checkpoints_linked_from_another_run_are_never_deleted_through_the_link(tmp_path):
    """Retention and replacing a checkpoint of the same name drop this run's links to another
    run's checkpoints (or leave them) but never delete that run's files, and the save succeeds."""
    model = tiny_model()
    other = save_step(tmp_path / "other", model, None, step=1)
    root = tmp_path / "run"
    root.mkdir()
    (root / "000000001").symlink_to(other)  # an old untagged one: retention would remove it
    (root / "000000004-step4").symlink_to(other)  # the same name as a later save: replaced
    for step in (2, 3):
        save_step(root, model, None, step=step, keep_last=1)
    path = save_step(root, model, None, step=4, tag="step4", keep_last=1)
    assert path.is_dir() and not path.is_symlink()
    verify(path)
    verify(other)
    assert load(other, tiny_model(seed=4)).step == 1


def test_a_stray_temporary_file_does_not_stop_a_save(tmp_path):
    """A `.tmp-*` that is a file, not an unfinished checkpoint directory, cannot stop a save."""
    (tmp_path / ".tmp-notes").write_text("not a checkpoint")
    path = save_step(tmp_path, tiny_model(), None, step=1)
    verify(path)


def test_a_root_that_cannot_be_made_is_one_line_naming_the_checkpoint(tmp_path):
    """The error names the checkpoint, the system's reason (not 'disk full') and that nothing
    earlier exists, and nothing else is raised on the way."""
    root = tmp_path / "runs"
    root.write_text("a file where the checkpoints should go")
    with pytest.raises(TwofoldError) as error:
        save_step(root, tiny_model(), None, step=1)
    assert (f"could not write checkpoint {root / '000000001'}: {os.strerror(errno.EEXIST)}; "
            "no earlier checkpoint exists;") in str(error.value)


def test_an_os_error_without_errno_is_reported_by_its_text(tmp_path, monkeypatch):
    """An OSError that carries only a text (no errno, no strerror) is reported by that text."""
    model = tiny_model()
    previous = save_step(tmp_path, model, None, step=1)

    def failing_fsync(path):  # what a filesystem driver or library might raise; cannot be provoked here
        raise OSError("fsync is not supported on this mount")

    monkeypatch.setattr(checkpoint, "fsync_path", failing_fsync)
    with pytest.raises(TwofoldError) as error:
        save_step(tmp_path, model, None, step=2)
    assert (f"{tmp_path / '000000002'}: fsync is not supported on this mount; the previous checkpoint "
            f"{previous.name} is intact;") in str(error.value)


def test_every_file_and_the_directory_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    """Durability: each tensor file in the temporary directory, then that directory, then the
    root (after the rename) are fsynced."""
    synced = []
    real = checkpoint.fsync_path
    monkeypatch.setattr(checkpoint, "fsync_path", lambda path: (synced.append(Path(path)), real(path)))
    save_step(tmp_path, tiny_model(), None, step=1)
    files = [p for p in synced if p.parent.name.startswith(".tmp-")]
    assert {p.name for p in files} >= {"model.safetensors", "optimizer.safetensors", "rng.safetensors"}
    assert synced[-2:] == [files[0].parent, tmp_path]


def test_the_same_states_save_to_the_same_bytes(tmp_path):
    """Checkpoint files do not depend on the order the caller's dicts were built in."""
    model = tiny_model()
    streams = [rng.capture()]
    a = save(tmp_path / "a", step=1, states=capture(model), progress={"tokens": 1, "phase": "p"},
             data={"x": 1, "y": 2}, config={"m": 1, "n": 2}, recipe={"r": 1, "s": 2}, streams=streams)
    b = save(tmp_path / "b", step=1, states=capture(model), progress={"phase": "p", "tokens": 1},
             data={"y": 2, "x": 1}, config={"n": 2, "m": 1}, recipe={"s": 2, "r": 1}, streams=streams)
    for name in ("state.json", "checksums.json", "model.safetensors", "rng.safetensors"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("change", ["a file added", "a file removed"])
def test_a_file_added_or_removed_makes_the_checkpoint_corrupt(tmp_path, change):
    """The checkpoint's file set must be exactly the checksummed one."""
    path = save_step(tmp_path, tiny_model(), None, step=1)
    if change == "a file added":
        (path / "notes.txt").write_text("hello")
    else:
        (path / "rng.safetensors").unlink()
    with pytest.raises(CorruptCheckpoint, match="holds files"):
        verify(path)


def test_read_state_reads_progress_without_tensors_and_names_a_damaged_file(tmp_path):
    """`read_state` gives step, tag and progress; a torn state.json is one line naming it."""
    path = save_step(tmp_path, tiny_model(), None, step=3, tag="step3")
    state = read_state(path)
    assert (state["step"], state["tag"], state["progress"]) == (3, "step3", {"tokens": 300, "phase": "pretrain"})
    (path / "state.json").write_text('{"step": 3, "tag"')
    with pytest.raises(TwofoldError, match=f"^{re.escape(str(path / 'state.json'))}: not valid JSON .*, torn or "
                                           "edited; the checkpoint is damaged; use another one$"):
        read_state(path)
