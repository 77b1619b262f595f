"""torchrun with two gloo processes on CPU: the same losses as one process, and checkpoints
that resume across world sizes with the data order unchanged."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from twofold.train import checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(ranks: int, *args) -> list[str]:
    if ranks == 1:
        return [sys.executable, "-m", "twofold", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
            "--master_port", str(free_port()), "-m", "twofold", *args]


def train_args(recipe, store, out, *extra):
    return ["train", "--recipe", str(recipe), "--store", str(store), "--out", str(out), "--objective", "clm",
            "--no-progress", "--save-every-steps", "3", *extra]


def run(argv):
    result = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def losses(out):
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line]


def final(out):
    return load_file(str(checkpoint.find_tagged(out / "checkpoints", "decay2") / "model.safetensors"))


def assert_close_runs(out, reference):
    expected, actual = losses(reference), losses(out)
    assert len(actual) == len(expected)
    for step, (a, b) in enumerate(zip(actual, expected), start=1):
        assert a == pytest.approx(b, rel=1e-4), f"step {step}"
    for name, tensor in final(reference).items():
        torch.testing.assert_close(final(out)[name], tensor, rtol=1e-3, atol=1e-5)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_store, tiny_recipe):
    out = tmp_path_factory.mktemp("dist") / "one"
    run(command(1, *train_args(tiny_recipe, tiny_store, out)))
    return out


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_gloo_ranks_match_one_process(tmp_path, tiny_store, tiny_recipe, one_process, parallel):
    out = tmp_path / "two"
    run(command(2, *train_args(tiny_recipe, tiny_store, out, "--parallel", parallel)))
    assert_close_runs(out, one_process)
    # each rank logged its own disjoint slice of every global batch
    for phase in ("pretrain", "decay"):
        ranks = [[json.loads(line) for line in (out / phase / "data_order" / f"rank{r}.jsonl").read_text().splitlines()]
                 for r in (0, 1)]
        log = one_process / phase / "data_order" / "rank0.jsonl"
        single = [json.loads(line) for line in log.read_text().splitlines()]
        for r0, r1, whole in zip(*ranks, single):
            assert r0["sequences"] + r1["sequences"] == whole["sequences"]


def interrupt(argv, out, steps):
    """Start `argv`, SIGKILL its whole process group once `steps` steps are logged."""
    process = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    metrics, deadline = out / "metrics.jsonl", time.time() + 180
    while not (metrics.exists() and metrics.read_text().count('"loss"') >= steps):
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("before,after,parallel", [(2, 1, "ddp"), (1, 2, "ddp"), (2, 1, "fsdp")])
def test_checkpoints_resume_across_world_sizes(tmp_path, tiny_store, tiny_recipe, one_process, before, after,
                                               parallel):
    out = tmp_path / f"{before}to{after}-{parallel}"
    interrupt(command(before, *train_args(tiny_recipe, tiny_store, out, "--parallel", parallel)), out, steps=8)
    assert checkpoint.list_checkpoints(out / "checkpoints")
    run(command(after, "train", "--resume", str(out), "--no-progress"))
    assert_close_runs(out, one_process)
