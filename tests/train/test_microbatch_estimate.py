"""The micro-batch's arithmetic, fast and by hand: the memory estimate of a forward + backward, where
the memory available is read from (the knob's units, /proc/meminfo, the cgroup, a GPU, the local
ranks' split), the edges of what fits, the lines that say why not, and the ranks' agreement on the
smallest choice (three spawned gloo ranks). Training with a chosen micro-batch:
tests/train/test_microbatch.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tests.gloo import on_ranks

from twofold.errors import TwofoldError
from twofold.train import microbatch
from twofold.train.distributed import World
from twofold.train.microbatch import GiB, Memory

# 2 layers of width 64 over a 512-token vocabulary: a chunk of logits holds 65,536 rows of it.
SHAPE = SimpleNamespace(num_hidden_layers=2, hidden_size=64, vocab_size=512)
CPU = World()


def phase(**fields):
    return SimpleNamespace(**{"name": "pretrain", "seq_len": 100, "mask_rate": 0.25, "batch_sequences": 8, **fields})


@pytest.fixture(autouse=True)
def thousand_parameters(monkeypatch):
    """A model of SHAPE has 1,000 parameters: 16,000 bytes of optimizer state."""
    monkeypatch.setattr(microbatch, "parameter_count", lambda config: 1000)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)


@pytest.fixture
def memory(monkeypatch):
    """Set the memory the trainer may use (TWOFOLD_MEMORY_BYTES); returns the bytes set."""

    def set_bytes(n: float) -> int:
        monkeypatch.setenv(microbatch.MEMORY_ENV, str(int(n)))
        return int(n)

    return set_bytes


# ----------------------------------------------------------------------------- the estimate

def test_the_estimate_is_the_body_the_head_and_a_chunk_of_logits_counted_by_hand():
    # 3 sequences of 100 tokens, a quarter predicted: 300 tokens, 75 targets.
    body = 300 * 2 * 28 * 64  # floats the backward keeps per token and layer, in hidden sizes
    head = 75 * 8 * 64 * 4  # per predicted token, fp32
    logits = 3 * 75 * 512 * 4  # logits, softmax and their gradient of the predicted rows, fp32
    assert microbatch.activation_bytes(SHAPE, 3, 100, 0.25, bf16=False) == body * 4 + head + logits == 4_915_200
    assert microbatch.activation_bytes(SHAPE, 3, 100, 0.25, bf16=True) == body * 3.5 + head + logits
    wide = SimpleNamespace(num_hidden_layers=1, hidden_size=8, vocab_size=50368)  # 666 rows a chunk
    full = 1000 * 28 * 8 * 4 + 1000 * 8 * 8 * 4
    assert microbatch.activation_bytes(wide, 10, 100, 1.0, bf16=False) == full + 3 * 666 * 50368 * 4
    assert microbatch.state_bytes(1000) == 16_000  # weights, gradients, two Adam moments in fp32


def test_the_share_predicted_is_the_mask_rate_for_mlm_and_every_token_for_clm():
    assert microbatch.target_share(phase(), "mlm") == 0.25 and microbatch.target_share(phase(), "clm") == 1.0


# ----------------------------------------------------------------------------- memory available

@pytest.mark.parametrize("value,expected", [("3k", 3 * 2**10), ("2T", 2 * 2**40), ("0.5G", 2**29), ("100KB", 102_400),
                                            ("7b", 7), ("1.5gib", 3 * 2**29), (" 64 ", 64)])
def test_the_memory_knob_reads_binary_units_in_any_case(monkeypatch, value, expected):
    monkeypatch.setenv(microbatch.MEMORY_ENV, value)
    assert microbatch.available_memory(torch.device("cpu")) == Memory(expected, microbatch.MEMORY_ENV)


@pytest.mark.parametrize("value", ["8GG", "12bb", "2kk"])
def test_a_doubled_unit_is_not_a_memory_size(monkeypatch, value):
    monkeypatch.setenv(microbatch.MEMORY_ENV, value)
    with pytest.raises(TwofoldError, match=f"^{microbatch.MEMORY_ENV}='{value}' is not a memory size"):
        microbatch.available_memory(torch.device("cpu"))


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="Linux's /proc/meminfo")
def test_the_probe_reads_this_machines_meminfo():
    line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemAvailable:"))
    found = microbatch._meminfo()
    assert found.source == "MemAvailable in /proc/meminfo"
    assert found.bytes == pytest.approx(int(line.split()[1]) * 1024, rel=0.2)  # it moves between two reads


def test_a_cgroup_limit_is_its_room_left_and_a_huge_one_no_limit(tmp_path):
    (tmp_path / "memory.max").write_text(f"{2**60}\n")  # v1 writes 2^63 - 4096 where there is no limit
    (tmp_path / "memory.current").write_text("0\n")
    assert microbatch._cgroup_room(str(tmp_path)) is None
    (tmp_path / "memory.max").write_text(f"{2**60 - 1}\n")
    assert microbatch._cgroup_room(str(tmp_path)) == Memory(2**60 - 1, f"the cgroup limit ({tmp_path}/memory.max)")
    (tmp_path / "memory.max").write_text("1000\n")
    (tmp_path / "memory.current").write_text("1500\n")  # over the limit: no room, not a negative one
    assert microbatch._cgroup_room(str(tmp_path)).bytes == 0


def test_the_least_of_meminfo_and_the_cgroup_is_available_and_a_gpu_reads_its_free_memory(monkeypatch):
    monkeypatch.delenv(microbatch.MEMORY_ENV, raising=False)
    meminfo, cgroup = Memory(5000, "meminfo"), Memory(3000, "cgroup")
    for probes, expected in [((meminfo, cgroup), cgroup), ((meminfo, None), meminfo), ((None, cgroup), cgroup),
                             ((Memory(2000, "meminfo"), cgroup), Memory(2000, "meminfo")), ((None, None), None)]:
        monkeypatch.setattr(microbatch, "_meminfo", lambda probe=probes[0]: probe)
        monkeypatch.setattr(microbatch, "_cgroup_room", lambda probe=probes[1]: probe)
        assert microbatch.available_memory(torch.device("cpu")) == expected
    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: asked.append(device) or (7 * GiB, 80 * GiB))
    gpu = torch.device("cuda", 1)  # no GPU here: its memory query is a stand-in
    assert microbatch.available_memory(gpu) == Memory(7 * GiB, "free memory of cuda:1") and asked == [gpu]


def test_ranks_on_one_machines_cpu_split_its_memory_and_gpus_keep_their_own(monkeypatch):
    monkeypatch.setenv(microbatch.MEMORY_ENV, "1001")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (4000, 8000))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert microbatch.memory_for(CPU) == Memory(1001, microbatch.MEMORY_ENV)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert microbatch.memory_for(CPU) == Memory(500, f"{microbatch.MEMORY_ENV}, split over 2 local ranks")
    monkeypatch.delenv(microbatch.MEMORY_ENV)
    assert microbatch.memory_for(World(device=torch.device("cuda", 0))) == Memory(4000, "free memory of cuda:0")
    monkeypatch.setattr(microbatch, "available_memory", lambda device: None)
    assert microbatch.memory_for(CPU) is None


# ----------------------------------------------------------------------------- what fits

def test_too_big_says_why_past_exactly_the_usable_memory():
    need = microbatch.activation_bytes(SHAPE, 3, 100, 0.25, bf16=True) + 16_000  # bf16's estimate
    assert need == int(need) and microbatch.too_big(SHAPE, 3, 100, 0.25, True, Memory(int(need), "knob")) is None
    said = microbatch.too_big(SHAPE, 3, 100, 0.25, True, Memory(int(need) - 1, "knob"))
    assert said == (f"3 sequence(s) of 100 tokens per forward pass need about {need / GiB:.2f} GiB (activations and "
                    f"optimizer state, estimated), more than the {(need - 1) / GiB:.2f} GiB available (knob)")
    margin = microbatch.too_big(SHAPE, 3, 100, 0.25, True, Memory(int(need), "knob"), usable=0.8)
    assert f"more than 80% of the {need / GiB:.2f} GiB available (knob)" in margin


def test_the_chosen_micro_batch_is_the_most_that_fit_within_the_margin(memory):
    one = microbatch.activation_bytes(SHAPE, 1, 100, 0.25, bf16=False)
    knob = memory((16_000 + 3 * one) / microbatch.MARGIN + 1)
    chosen, why = microbatch.choose(SHAPE, phase(), "mlm", False, CPU)
    assert chosen == 3 and why == (f"phase pretrain: 3 of this rank's 8 sequences per forward pass (about "
                                   f"{one / GiB:.2f} GiB each, estimated, against {knob / GiB:.1f} GiB available: "
                                   f"{microbatch.MEMORY_ENV}); --micro-batch N overrides")
    assert microbatch.choose(SHAPE, phase(), "clm", False, CPU)[0] == 2  # every token predicted: 2.25 MB each
    big = phase(batch_sequences=32)
    memory((16_000 + 12 * one) / microbatch.MARGIN + 1)
    assert microbatch.choose(SHAPE, big, "mlm", False, CPU)[0] == 12
    assert microbatch.choose(SHAPE, big, "mlm", True, CPU)[0] == 13  # bf16 fits more
    memory((16_000 + 8 * one) / microbatch.MARGIN + 1)
    assert microbatch.choose(SHAPE, phase(), "mlm", False, CPU) == (None, None)  # the whole step fits
    memory((16_000 + 7 * one) / microbatch.MARGIN + 1)
    assert microbatch.choose(SHAPE, phase(), "mlm", False, CPU)[0] == 7
    memory((16_000 + 1 * one) / microbatch.MARGIN + 1)
    assert microbatch.choose(SHAPE, phase(), "mlm", False, CPU)[0] == 1
    memory((16_000 + 0.9 * one) / microbatch.MARGIN)
    with pytest.raises(TwofoldError, match=r"^phase pretrain: 1 sequence\(s\) of 100 tokens .* more than 80% of the "):
        microbatch.choose(SHAPE, phase(), "mlm", False, CPU)


def test_the_line_gives_the_estimate_of_one_sequence_in_the_runs_precision(memory):
    large = SimpleNamespace(num_hidden_layers=8, hidden_size=1024, vocab_size=512)  # ~0.9 GiB a sequence
    memory(10 * GiB)
    for bf16, each in ((False, "0.88"), (True, "0.77")):
        assert microbatch.activation_bytes(large, 1, 1024, 0.25, bf16) / GiB == pytest.approx(float(each), abs=0.005)
        chosen, why = microbatch.choose(large, phase(seq_len=1024, batch_sequences=64), "mlm", bf16, CPU)
        assert f"{chosen} of this rank's 64 sequences per forward pass (about {each} GiB each" in why


def test_an_explicit_micro_batch_may_use_all_the_memory_and_a_chosen_one_the_margin(memory):
    one = microbatch.activation_bytes(SHAPE, 1, 100, 0.25, bf16=False)
    bf16_one = microbatch.activation_bytes(SHAPE, 1, 100, 0.25, bf16=True)
    memory(16_000 + 2 * one)  # exactly two fp32 sequences, all of it
    microbatch.check_fits(2, (phase(),), SHAPE, "mlm", False, CPU)
    with pytest.raises(TwofoldError, match=r"^--micro-batch 3: phase pretrain: 3 sequence\(s\) .* more than the "):
        microbatch.check_fits(3, (phase(),), SHAPE, "mlm", False, CPU)
    with pytest.raises(TwofoldError, match="--micro-batch 2: phase pretrain"):
        microbatch.check_fits(2, (phase(),), SHAPE, "clm", False, CPU)  # CLM predicts every token
    microbatch.check_fits(None, (phase(),), SHAPE, "mlm", False, CPU)  # one sequence within the margin
    memory(16_000 + 12 * one)
    big = (phase(batch_sequences=32),)
    microbatch.check_fits(13, big, SHAPE, "mlm", True, CPU)  # bf16's estimate: 13 fit where 12 fp32 do
    with pytest.raises(TwofoldError, match="--micro-batch 13: phase pretrain"):
        microbatch.check_fits(13, big, SHAPE, "mlm", False, CPU)
    assert 13 * bf16_one <= 12 * one < 13 * one
    memory((16_000 + one) / microbatch.MARGIN - 1)
    with pytest.raises(TwofoldError, match=r"^phase pretrain: 1 sequence\(s\) .* more than 80% of the .*; use a "):
        microbatch.check_fits(None, (phase(),), SHAPE, "mlm", False, CPU)


def test_nothing_is_checked_where_no_memory_can_be_read(monkeypatch):
    monkeypatch.setattr(microbatch, "available_memory", lambda device: None)
    microbatch.check_fits(10**6, (phase(),), SHAPE, "mlm", False, CPU)
    assert microbatch.choose(SHAPE, phase(), "mlm", False, CPU) == (None, None)


# ----------------------------------------------------------------------------- out of memory

def test_only_a_gpu_raises_when_memory_runs_out_and_two_sequences_halve_to_one():
    assert microbatch.recovers(torch.device("cuda", 0)) and not microbatch.recovers(torch.device("cpu"))

    def attempt(sequences):
        if sequences > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")
        return "passed"

    undone = []
    assert microbatch.halving(attempt, 2, undone.append) == ("passed", 1) and undone == [1]


# ----------------------------------------------------------------------------- ranks agree

def _least(world: World) -> int:
    return microbatch._least([5, 3, 4][world.rank], world)


def test_every_rank_takes_the_smallest_micro_batch_any_rank_chose(tmp_path):
    assert on_ranks(_least, 3, tmp_path) == [3, 3, 3]
    assert microbatch._least(5, CPU) == 5
