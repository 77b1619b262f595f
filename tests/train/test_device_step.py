"""The GPU step's contract, proved on the CPU: one varlen attention call per layer, nothing read
back from the device in forward, backward and optimizer step, one compiled graph for micro-batches
of any document structure, and the same numbers as the CPU kernels.

PyTorch's varlen kernel raises on the CPU, so `tests/model/varlen_standin.py` registers a CPU
implementation of its custom ops with the kernel's documented semantics; everything else
(`varlen_attn`, its autograd and fake tensors, torch.compile) is PyTorch's own.
"""

import dataclasses
import itertools
import json
import types

import numpy as np
import pytest
import torch
from tests.model import varlen_standin
from torch.utils._python_dispatch import TorchDispatchMode

from twofold.data.batches import Batch, target_capacity
from twofold.data.loader import BatchLoader
from twofold.model import TwofoldModel, preset
from twofold.model.config import LOCAL
from twofold.model.flops import training_flops
from twofold.model.loss import IGNORE_INDEX
from twofold.train import loop, runs
from twofold.train.distributed import World
from twofold.train.rundir import RunDir

from .test_observed import SMALL, recipe_from

# The ettin-150m layer structure (22 layers, every third global) at a width that runs in seconds;
# a 16-token window (radius 8), so that it binds in some sequences and not in others.
STRUCTURE = dict(hidden_size=64, num_attention_heads=2, intermediate_size=96, vocab_size=512,
                 local_attention=16, cls_token_id=1, sep_token_id=2, pad_token_id=0, mask_token_id=3,
                 bos_token_id=1, eos_token_id=2)
LENGTHS = [40, 3, 9, 17, 1, 8, 30]  # windows binding (40, 17, 30; 9 for the decoder) and not


def packed_batch(lengths, vocab=512, seed=0, rate=0.3) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    ids = torch.randint(4, vocab, (n,), generator=generator)
    labels = torch.where(torch.rand(n, generator=generator) < rate, ids, IGNORE_INDEX)
    cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    positions = torch.cat([torch.arange(length) for length in lengths])
    return Batch(input_ids=ids, labels=labels, position_ids=positions, cu_seqlens=cu, max_seqlen=max(lengths),
                 sequence_offsets=torch.tensor([0, n], dtype=torch.int32), step=0, rank=0, first_sequence=0)


def loss_and_grads(model, batch):
    out = loop.forward(model, batch)
    grads = torch.autograd.grad(out.loss, list(model.parameters()))
    return out.loss.detach(), grads


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_one_varlen_call_per_layer_equals_the_cpu_kernels(causal):
    torch.manual_seed(0)
    model = TwofoldModel(preset("ettin-150m", causal=causal, **STRUCTURE)).double()
    assert model.config.num_hidden_layers == 22 and model.config.layer_types.count(LOCAL) == 14
    batch = packed_batch(LENGTHS).with_targets()
    cpu_loss, cpu_grads = loss_and_grads(model, batch)  # buckets and band kernels
    model.attention_kernel = "varlen"
    before = dict(varlen_standin.calls)
    varlen_loss, varlen_grads = loss_and_grads(model, batch)
    assert varlen_standin.calls["forward"] - before["forward"] == 22  # one call per layer
    assert varlen_standin.calls["backward"] - before["backward"] == 22
    assert abs(varlen_loss - cpu_loss) < 1e-10
    assert max(float((a - b).abs().max()) for a, b in zip(varlen_grads, cpu_grads)) < 1e-10
    # Padding tokens (their own sequences, no label) and padding target rows change nothing.
    padded = packed_batch(LENGTHS).with_targets(tokens=sum(LENGTHS) + 45, targets=batch.num_targets + 7,
                                                max_seqlen=40)
    assert padded.cu_seqlens.tolist()[-3:] == [108, 148, 153]  # 45 pad tokens in pieces of at most 40
    padded_loss, padded_grads = loss_and_grads(model, padded)
    assert abs(padded_loss - cpu_loss) < 1e-10
    assert max(float((a - b).abs().max()) for a, b in zip(padded_grads, cpu_grads)) < 1e-10
    # And the trainer's form is the model's ordinary loss on the same labels.
    plain = model(batch.input_ids, labels=batch.labels, cu_seqlens=batch.cu_seqlens, max_seqlen=40)
    assert abs(plain.loss.detach() - cpu_loss) < 1e-10


class DeviceReads(TorchDispatchMode):
    """Counts the operations that make a CUDA host wait: reading a value (`.item()`, `int()`,
    `bool()`) and operations whose output size depends on the data (boolean indexing)."""

    READS = {"aten::_local_scalar_dense", "aten::is_nonzero", "aten::equal", "aten::nonzero",
             "aten::masked_select", "aten::repeat_interleave", "aten::unique_dim", "aten::_unique2"}

    def __init__(self):
        super().__init__()
        self.reads, self.ops = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        self.ops.append(name)
        if name in self.READS:
            self.reads.append((name, args))
        return func(*args, **(kwargs or {}))


def one_device_step(tmp_path, tiny_store, text, fixed: bool, objective: str):
    tmp_path.mkdir(exist_ok=True)
    recipe = recipe_from(tmp_path, text, "device")
    options = loop.Options(stores=(str(tiny_store),), objective=objective, progress=False, fixed_shapes=fixed,
                           attention="varlen" if fixed else None, micro_batch_sequences=3, compile=False)
    trainer = loop.Trainer(RunDir(tmp_path / "run"), recipe, options,
                           model_config=preset("tiny", causal=objective == "clm"), world=World())
    phase = recipe.phases[0]
    loader = BatchLoader.from_spec([tiny_store], phase.data(seed=1), objective=objective)
    for step in range(2):  # the second step has optimizer states to read and write
        micro, targets, _ = trainer._prepare(loader.batch(step), phase)  # the host's part
        with DeviceReads() as mode:
            trainer._device_step(micro, targets)
            trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
    # StableAdamW reads its step counters, host tensors as in torch's Adam: not device reads.
    counters = [state["step"] for state in trainer.optimizer.state.values()]
    reads = [name for name, args in mode.reads if not any(args[0] is c for c in counters)]
    return reads, mode.ops


@pytest.mark.parametrize("objective", ["mlm", "clm"])
@pytest.mark.parametrize("optimizer", ["stable_adamw", "adamw"])
def test_forward_backward_and_optimizer_step_read_nothing_back(tmp_path, tiny_store, objective, optimizer):
    text = SMALL.replace("stable_adamw", optimizer).replace("eps: 1.0e-6}", "eps: 1.0e-6, grad_clip: 1.0}")
    reads, ops = one_device_step(tmp_path, tiny_store, text, fixed=True, objective=objective)
    assert reads == []
    assert "torch_attn::_varlen_attn" in ops and "torch_attn::_varlen_attn_backward" in ops
    if optimizer == "stable_adamw":  # the update clipping's RMS as foreach operations on the device
        assert "aten::_foreach_norm" in ops
    # The CPU path builds its kernels' layout from the lengths: the count sees those reads.
    reads, _ = one_device_step(tmp_path / "cpu", tiny_store, text, fixed=False, objective=objective)
    assert reads


ONE_SHAPE = """\
model: tiny
seed: 5
optimizer: {name: stable_adamw, lr: 1.0e-3, betas: [0.9, 0.98], eps: 1.0e-6, grad_clip: 1.0}
phase:
  pretrain: {tokens: 1024, seq_len: 32, mask_rate: 0.3, batch_sequences: 8, checkpoint_every_tokens: 1K, tag: step,
             rope_theta_global: 10000}
  decay: {tokens: 768, seq_len: 32, mask_rate: 0.3, lr_decay: linear, batch_sequences: 8,
          checkpoint_every_tokens: 1K, tag: decay, rope_theta_global: 160000}
"""


@pytest.fixture(scope="module")
def short_documents(tmp_path_factory, tiny_store):
    """A store of documents of 2 to 60 words, so that windows hold different numbers of them."""
    from twofold.data.sources import SourceSpec
    from twofold.data.store import prepare_store
    from twofold.data.tokenizer import load_tokenizer

    root = tmp_path_factory.mktemp("short")
    rng = np.random.default_rng(3)
    words = "import json def load return value key error module class string encode".split()
    lines = [json.dumps({"text": " ".join(rng.choice(words, rng.integers(2, 60)))}) for _ in range(400)]
    (root / "short.jsonl").write_text("\n".join(lines) + "\n")
    prepare_store([SourceSpec(str(root / "short.jsonl"))], load_tokenizer(tiny_store.parent / "tokenizer"),
                  root / "store", progress=False)
    return root / "store"


def test_micro_batches_of_any_structure_run_one_compiled_graph(tmp_path, short_documents, monkeypatch):
    """The trainer's own torch.compile call (fullgraph, fixed shapes), with AOTAutograd's eager
    backend (Inductor's code generation takes minutes on this CPU and is not what is tested):
    seven steps of three micro-batches each, of different document structure, across two phases of
    one shape (another RoPE θ: the model's buffers change in place), compile once and never again."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda net, **how: real(net, backend="aot_eager", **how))
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    options = loop.Options(stores=(str(short_documents),), objective="mlm", progress=False, attention="varlen",
                           micro_batch_sequences=3)
    run = runs.start(tmp_path / "compiled", recipe_from(tmp_path, ONE_SHAPE, "one"), options, World())
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in steps if "loss" in r]) == 7
    documents = set()  # documents per micro-batch of three rows
    for phase in ("pretrain", "decay"):
        for line in (run / phase / "data_order" / "rank0.jsonl").read_text().splitlines():
            rows = json.loads(line)["sequences"]
            documents |= {sum(len(row) for row in rows[i:i + 3]) for i in range(0, len(rows), 3)}
    assert len(documents) > 3
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()


def test_the_model_step_has_no_graph_break(tiny_store):
    model = TwofoldModel(preset("tiny"))
    model.attention_kernel = "varlen"
    loader = BatchLoader.from_spec([tiny_store], recipe_data(), objective="mlm")
    tokens = 4 * 32
    batch = loader.batch(0).with_targets(tokens, target_capacity(tokens, "mlm", 0.3), 32)
    explained = torch._dynamo.explain(lambda: loop.forward(model, batch).loss.backward())()
    assert explained.graph_break_count == 0 and explained.graph_count == 1


def recipe_data():
    from twofold.data.mixture import Mixture
    from twofold.data.order import BatchSchedule
    from twofold.train.recipe import DataSpec

    return DataSpec(Mixture(), 32, BatchSchedule(4), 0.3, 1)


def test_the_trainer_reports_mfu_from_the_shared_formula(tmp_path, tiny_store, monkeypatch):
    """MFU = the phase's model FLOPs so far / its time so far / the card's peak; on the CPU, with a
    clock that ticks one second a reading and a peak given, the records say exactly that."""
    ticks = itertools.count()
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    monkeypatch.setattr(loop, "peak_flops", lambda device: 1e9)
    options = loop.Options(stores=(str(tiny_store),), objective="mlm", progress=False)
    recipe = recipe_from(tmp_path, ONE_SHAPE, "mfu")
    run = runs.start(tmp_path / "mfu", recipe, options, World())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    config = preset("tiny")
    for phase_index, phase in enumerate(recipe.phases):
        loader = BatchLoader.from_spec([tiny_store], phase.data(seed=recipe.seed + phase_index), objective="mlm")
        steps = [r for r in records if r["phase"] == phase.name and "loss" in r]
        flops = 0.0
        for k, record in enumerate(steps):
            batch = loader.batch(k)
            flops += training_flops(config, batch.cu_seqlens.diff().numpy(), batch.num_targets)
            seconds = record["phase_tokens"] / record["tokens_per_s"]
            assert record["mfu"] == pytest.approx(flops / seconds / 1e9, rel=1e-9)


def test_fixed_shapes_pad_every_micro_batch_to_one_size(tmp_path, tiny_store):
    recipe = recipe_from(tmp_path, ONE_SHAPE, "shapes")
    options = loop.Options(stores=(str(tiny_store),), objective="mlm", progress=False, fixed_shapes=True,
                           micro_batch_sequences=3)
    trainer = loop.Trainer(RunDir(tmp_path / "run"), recipe, options, model_config=preset("tiny"), world=World())
    phase = recipe.phases[0]
    loader = BatchLoader.from_spec([tiny_store], phase.data(seed=1), objective="mlm")
    shapes = set()
    for step in range(3):
        batch = loader.batch(step)
        micro, targets, _ = trainer._prepare(batch, phase)
        assert targets == batch.num_targets and len(micro) == 3  # 8 rows: 3 + 3 + 2 (padded)
        assert sum(int((m.target_labels != IGNORE_INDEX).sum()) for m in micro) == batch.num_targets
        for part in micro:
            shapes.add((part.input_ids.shape, part.target_index.shape, part.max_seqlen))
            assert int(part.cu_seqlens[-1]) == 96 and int(part.cu_seqlens.diff().max()) <= 32
            real = part.target_labels != IGNORE_INDEX
            assert torch.equal(part.labels[part.target_index[real]], part.target_labels[real])
    assert shapes == {(torch.Size([96]), torch.Size([target_capacity(96, "mlm", 0.3)]), 32)}


def test_chosen_micro_batch_loss_equals_the_unpadded_path(tmp_path, tiny_store):
    """A run with fixed shapes (padding, the trainer's loss) trains what the CPU path trains."""
    losses = {}
    for fixed in (False, True):
        options = loop.Options(stores=(str(tiny_store),), objective="clm", progress=False, fixed_shapes=fixed,
                               micro_batch_sequences=3)  # fixed shapes on the CPU kernels: not compiled
        run = runs.start(tmp_path / f"fixed-{fixed}", recipe_from(tmp_path, ONE_SHAPE, "same"), options, World())
        losses[fixed] = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
                         if "loss" in json.loads(line)]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_chunked_batches_keep_the_loader_fields():
    batch = packed_batch([5, 6])
    padded = batch.with_targets(tokens=20, targets=8, max_seqlen=8)
    assert dataclasses.replace(padded, input_ids=batch.input_ids).step == batch.step
    assert padded.num_targets == batch.num_targets and padded.sequence_offsets.tolist() == [0, 11]
    with pytest.raises(ValueError):
        batch.with_targets(tokens=5)
