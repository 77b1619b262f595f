"""A run's random streams: seeded per (seed, phase, rank, step), captured and put back exactly, and
what a resume on another number of ranks does with them (twofold.train.rng's policy)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from tests.gloo import on_ranks

from twofold.errors import TwofoldError
from twofold.train import rng
from twofold.train.distributed import World


def draws() -> tuple:
    """One draw of each stream, including numpy's and python's cached second gaussian."""
    return (torch.rand(3).tolist(), np.random.rand(2).tolist(), np.random.standard_normal(3).tolist(),
            random.random(), random.gauss(0, 1), random.gauss(0, 1))


def test_streams_are_seeded_from_seed_phase_rank_and_step_each_of_which_matters():
    rng.seed_streams(7, 1, 2, 30)
    first = draws()
    rng.seed_streams(7, 1, 2, 30)
    assert draws() == first
    for other in [(8, 1, 2, 30), (7, 2, 2, 30), (7, 1, 3, 30), (7, 1, 2, 31), (1, 7, 2, 30), (7, 1, 30, 2)]:
        rng.seed_streams(*other)
        again = draws()
        assert all(a != b for a, b in zip(again[:4], first[:4])), other  # torch, numpy and python all move
    # the rule (module docstring): numpy's SeedSequence of the four numbers, both 32-bit words for torch
    state = np.random.SeedSequence([7, 1, 2, 30]).generate_state(2)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))
    np.random.seed(state)
    random.seed(int(state[0]))
    assert draws() == first
    rng.seed_streams(7, 1, 2)
    step_zero = draws()
    rng.seed_streams(7, 1, 2, 0)
    assert draws() == step_zero


def test_capture_and_restore_repeat_every_stream_exactly():
    rng.seed_streams(3, 0, 0)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)  # and in python's
    saved = rng.capture()
    tensors, rest = saved
    assert set(tensors) == {"torch", "numpy"} and tensors["numpy"].dtype == torch.int64  # no GPU here
    assert rest["numpy"][2] == 1 and rest["python"][2] is not None
    expected = draws()
    rng.seed_streams(99, 9, 9)
    rng.restore(saved)
    assert draws() == expected
    assert rng.gather(World()) and len(rng.gather(World())) == 1  # one process: its own streams
    rng.restore(rng.gather(World())[0])
    again = draws()
    rng.restore(saved)
    assert draws() == expected != again


def _gather(world: World) -> dict:
    """On each rank: move its own stream by a different amount; rank 0 gathers every rank's streams
    and draws from each."""
    rng.seed_streams(5, 0, world.rank)
    torch.rand(world.rank + 1)
    gathered = rng.gather(world)
    own_draws = json.dumps(list(draws()))
    return {"own": own_draws, "gathered": None if gathered is None else
            [json.dumps(list(own(streams))) for streams in gathered]}


def test_the_main_rank_gathers_every_ranks_own_streams_in_rank_order(tmp_path):
    ranks = on_ranks(_gather, 3, tmp_path)
    assert ranks[0]["gathered"] == [r["own"] for r in ranks] and len({r["own"] for r in ranks}) == 3
    assert ranks[1]["gathered"] is None and ranks[2]["gathered"] is None


def saved_by(ranks: int) -> list:
    streams = []
    for rank in range(ranks):
        rng.seed_streams(100, 0, rank, 5)
        torch.rand(1)
        streams.append(rng.capture())
    return streams


def resume(saved, world, **changes):
    settings = dict(seed=1, phase_index=2, step=40, phase_done=False, dropout=True, reseed=False, where="ckpt")
    rng.streams_for_resume(saved, world, **{**settings, **changes})
    return draws()


def fresh(rank: int, step: int = 40) -> tuple:
    rng.seed_streams(1, 2, rank, step)
    return draws()


def own(streams) -> tuple:
    rng.restore(streams)
    return draws()


def test_a_resume_on_as_many_ranks_puts_back_each_ranks_own_streams():
    saved = saved_by(2)
    assert resume(saved, World(rank=1, world_size=2)) == own(saved[1]) != own(saved[0])
    assert resume(saved, World(rank=0, world_size=2), dropout=False, phase_done=True) == own(saved[0])
    with pytest.raises(TwofoldError, match=r"^--reseed-rng: ckpt needs no fresh random streams \(it resumes on the "
                                           r"same number of ranks\), so the flag would change nothing; resume without"):
        resume(saved, World(rank=0, world_size=2), reseed=True)


@pytest.mark.parametrize("why, changes", [("its phase is complete", {"phase_done": True}),
                                          ("the model has no dropout", {"dropout": False})])
def test_another_number_of_ranks_starts_fresh_streams_where_nothing_is_lost(capsys, why, changes):
    saved = saved_by(2)
    for rank in range(3):
        assert resume(saved, World(rank=rank, world_size=3), **changes) == fresh(rank)
    assert capsys.readouterr().err == ""
    with pytest.raises(TwofoldError, match=rf"needs no fresh random streams \({why}\)"):
        resume(saved, World(rank=0, world_size=3), reseed=True, **changes)


def test_another_number_of_ranks_with_dropout_is_refused_unless_reseeded(capsys):
    saved = saved_by(2)
    with pytest.raises(TwofoldError) as refused:
        resume(saved, World(rank=0, world_size=1))
    assert str(refused.value) == (
        "ckpt was written by 2 rank(s) with dropout on, and its per-rank random streams cannot be split over 1; "
        "resume with 2 process(es) (torchrun --nproc_per_node 2), or add --reseed-rng to go on with fresh streams "
        "(the run then differs from an uninterrupted one)")
    assert resume(saved, World(rank=1, world_size=3), reseed=True) == fresh(1)
    assert capsys.readouterr().err == ""  # only the main rank says it
    assert resume(saved, World(rank=0, world_size=3), reseed=True) == fresh(0) != fresh(0, step=0)
    assert capsys.readouterr().err == ("twofold: warning: ckpt: 2 rank(s) wrote it, 3 resume it; dropout continues "
                                       "with fresh per-rank streams (--reseed-rng)\n")


class FakeCudaStreams:
    """torch.cuda's per-device RNG state, held in a dict: no GPU here (the real calls need CUDA)."""

    def __init__(self, monkeypatch):
        self.states = {"cuda:0": torch.tensor([1, 2, 3], dtype=torch.uint8)}
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: self.states[str(device)].clone())
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_rng_state)

    def set_rng_state(self, state, device):
        self.states[str(device)] = state.clone()


def test_a_run_on_a_gpu_saves_and_puts_back_that_gpus_stream_too(monkeypatch):
    fake = FakeCudaStreams(monkeypatch)
    gpu = torch.device("cuda:0")
    tensors, _ = rng.capture(gpu)
    assert set(tensors) == {"torch", "cuda", "numpy"} and tensors["cuda"].tolist() == [1, 2, 3]
    [gathered] = rng.gather(World(device=gpu))
    assert gathered[0]["cuda"].tolist() == [1, 2, 3]
    fake.states["cuda:0"] = torch.tensor([9, 9, 9], dtype=torch.uint8)
    rng.restore((tensors, _), gpu)
    assert fake.states["cuda:0"].tolist() == [1, 2, 3]
    fake.states["cuda:0"] = torch.tensor([9, 9, 9], dtype=torch.uint8)
    rng.restore((tensors, _))  # resumed on the CPU: the GPU stream is not used
    rng.restore(rng.capture(), gpu)  # saved on the CPU: nothing to put on the GPU
    assert fake.states["cuda:0"].tolist() == [9, 9, 9]
    rng.streams_for_resume([(tensors, _)], World(device=gpu), seed=0, phase_index=0, step=1, phase_done=False,
                           dropout=True, reseed=False, where="ckpt")
    assert fake.states["cuda:0"].tolist() == [1, 2, 3]
