"""A tiny token store (stdlib json + email, 512-token BPE), a tiny recipe for loop tests, and the
weight decay each optimizer step applied."""

from pathlib import Path

import pytest
import torch
from tests.cache import cached

TINY_RECIPE = """\
model: tiny
seed: 21
optimizer: {name: stable_adamw, lr: 3.0e-3, betas: [0.9, 0.98], eps: 1.0e-6, weight_decay: 3.0e-4}
phase:
  pretrain: {tokens: 4K, seq_len: 64, mask_rate: 0.3, lr_warmup_tokens: 512, batch_sequences: 8,
             batch_start_sequences: 2, batch_warmup_tokens: 1K, checkpoint_every_tokens: 2K, tag: step}
  extension: {tokens: 2K, seq_len: 128, mask_rate: 0.3, lr_decay: one_minus_sqrt, lr_min_ratio: 0.5,
              batch_sequences: 4, checkpoint_every_tokens: 1K, tag: ext}
  decay: {tokens: 1K, seq_len: 128, mask_rate: 0.15, lr_decay: one_minus_sqrt, lr_start_ratio: 0.5,
          lr_min_ratio: 0.02, batch_sequences: 4, checkpoint_every_tokens: 1K, tag: decay}
  cross: {tokens: 1K, seq_len: 128, mask_rate: 0.15, lr: 1.5e-3, lr_warmup_tokens: 256, lr_decay: linear,
          lr_min_ratio: 0.02, batch_sequences: 4, checkpoint_every_tokens: 512, tag: cross}
"""


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    from twofold.data.sources import SourceSpec
    from twofold.data.stdlib import stdlib_documents
    from twofold.data.store import prepare_store
    from twofold.data.tokenizer import train_tokenizer

    def build(root: Path) -> None:
        texts = (d.text for d in stdlib_documents(packages=["json", "email"]))
        tokenizer = train_tokenizer(texts, 512, root / "tokenizer")
        prepare_store([SourceSpec("stdlib", packages="json+email")], tokenizer, root / "store", progress=False)

    return cached(tmp_path_factory, "tiny", build) / "store"


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path


@pytest.fixture
def decay_applied(monkeypatch):
    """The fraction by which each optimizer step shrank a decaying weight, measured on a probe
    parameter with zero gradient added to the decaying group for that step (Adam moves it by 0)."""
    from twofold.train import optim

    applied = []
    real = optim.StableAdamW.step

    def step(self, closure=None):
        probe = torch.ones(3, dtype=torch.float64, requires_grad=True)
        probe.grad = torch.zeros_like(probe)
        group = self.param_groups[0]
        assert group["weight_decay"] > 0  # the group of weights that decay
        group["params"].append(probe)
        try:
            return real(self, closure)
        finally:
            group["params"].pop()
            self.state.pop(probe, None)
            applied.append(1.0 - probe.detach()[0].item())

    monkeypatch.setattr(optim.StableAdamW, "step", step)
    return applied
