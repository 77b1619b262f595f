"""`twofold model …`: look at model shapes and Hugging Face checkpoints."""

from __future__ import annotations

import argparse

import torch


def register(subparsers) -> None:
    parser = subparsers.add_parser("model", help="inspect model presets and checkpoints",
                                   description="Inspect model presets and Hugging Face checkpoints.")
    commands = parser.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    presets = commands.add_parser("presets", help="list the named model shapes with parameter counts")
    presets.set_defaults(func=show_presets)
    info = commands.add_parser(
        "info", help="summarise a Hugging Face model directory",
        description="Load a ModernBERT / ModernBERT-decoder directory with twofold and summarise it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    info.add_argument("path", help="directory with config.json and model.safetensors")
    info.set_defaults(func=show_info)


def _count(config) -> tuple[int, int]:
    from twofold.model import TwofoldModel

    with torch.device("meta"):  # shapes only
        model = TwofoldModel(config)
    return model.num_parameters(), model.num_parameters(exclude_embeddings=True)


def show_presets(args) -> int:
    from twofold.model import PRESETS, preset

    print(f"{'preset':<14}{'layers':>7}{'hidden':>8}{'inter':>7}{'heads':>7}{'vocab':>9}{'params':>10}{'non-emb':>10}")
    for name in PRESETS:
        config = preset(name)
        total, body = _count(config)
        print(f"{name:<14}{config.num_hidden_layers:>7}{config.hidden_size:>8}{config.intermediate_size:>7}"
              f"{config.num_attention_heads:>7}{config.vocab_size:>9}{total / 1e6:>9.1f}M{body / 1e6:>9.1f}M")
    return 0


def show_info(args) -> int:
    from twofold.hf import load

    model = load(args.path)
    config = model.config
    total, body = _count(config)
    kind = "decoder (causal LM)" if config.causal else "encoder (masked LM)"
    print(f"{args.path}: {type(model).__name__}, {kind}")
    print(f"  parameters    {total / 1e6:.1f}M ({body / 1e6:.1f}M without embeddings)")
    print(f"  shape         {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"intermediate {config.intermediate_size}, {config.num_attention_heads} heads, vocab {config.vocab_size}")
    layers = "".join("G" if t == "full_attention" else "l" for t in config.layer_types)
    print(f"  layers        {layers}  (G global, l sliding window of {config.local_attention})")
    print(f"  rope theta    global {config.global_rope_theta:g}, local {config.local_rope_theta:g}")
    print(f"  special ids   cls {config.cls_token_id} sep {config.sep_token_id} pad {config.pad_token_id} "
          f"mask {config.mask_token_id} bos {config.bos_token_id} eos {config.eos_token_id}")
    return 0
