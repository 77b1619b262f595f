"""Sweep the `demo` recipe on a dev split: the same recipe trains both members, then held-out scores.

The dev split is carved out of the stdlib *train* split (about 10% of its modules, by a hash
of the module name other than the train/held-out one), so the held-out split the demo reports
on is never looked at while choosing the recipe. Each configuration trains an encoder and a
decoder with one recipe (`--set` overrides of `demo`, optionally another model shape) on the
dev-train store and prints, on dev text framed as the demo's evaluation frames it (windows of
128 tokens): the encoder's MLM accuracy and loss at 15% masking, the decoder's perplexity, and
the two baselines (the most frequent train token at every masked position; the unigram
perplexity of the dev text under add-one train counts).

    PYTHONPATH=src python benchmarks/demo_sweep.py --budget 1.5M \
        --config base: --config adamw-1e-3:optimizer.name=adamw,optimizer.lr=1e-3

A configuration is `NAME:SET,SET,...`; a SET `shape=L+H+I+A` changes the model (layers, hidden,
intermediate, heads), `init=STD` its initializer range, `vocab=N` the tokenizer; the rest are
recipe `--set` overrides (`+` for a comma inside a value). `--encoder-only` skips the decoder
(quick looks at the encoder, which is the slower learner).
Results are appended to `--out/results.jsonl` (one line per configuration).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from twofold.data.sources import SourceSpec
from twofold.data.stdlib import stdlib_documents
from twofold.data.store import TokenStore, prepare_store
from twofold.data.tokenizer import load_tokenizer, train_tokenizer
from twofold.eval.tasks.lm import _target_nll, mask_windows, text_windows
from twofold.model.config import PRESETS
from twofold.train.distributed import World
from twofold.train.loop import Options
from twofold.train.recipe import load_recipe, parse_number
from twofold.train.rundir import RunDir
from twofold.train.runs import start as start_member
from twofold.train.runs import start_pair

DEV_EVERY = 10  # one train module in ten is dev


def is_dev(doc_id: str) -> bool:
    module = doc_id.split(":", 1)[1]
    return int(hashlib.sha256(f"twofold-demo-dev:{module}".encode()).hexdigest()[:8], 16) % DEV_EVERY == 0


def dev_split(root: Path) -> tuple[Path, Path]:
    """JSONL files of the dev-train and dev parts of the stdlib train split (reference topics: dev-train)."""
    train, dev = root / "dev-train.jsonl", root / "dev.jsonl"
    if not dev.exists():
        root.mkdir(parents=True, exist_ok=True)
        with train.open("w") as t, dev.open("w") as d:
            for document in stdlib_documents("train"):
                held = document.doc_id.startswith(("code:", "docstrings:")) and is_dev(document.doc_id)
                (d if held else t).write(json.dumps({"text": document.text}) + "\n")
    return train, dev


def corpus(root: Path, vocab: int):
    """(tokenizer, dev-train store, dev texts) for a vocabulary size, built once."""
    train, dev = dev_split(root)
    folder = root / f"vocab{vocab}"
    if not (folder / "tokenizer" / "tokenizer.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        texts = (json.loads(line)["text"] for line in train.open())
        train_tokenizer(texts, vocab, folder / "tokenizer")
    tokenizer = load_tokenizer(folder / "tokenizer")
    store = folder / "store"
    if not store.exists():
        prepare_store([SourceSpec(path=str(train), name="dev-train")], tokenizer, store, progress=False)
    return tokenizer, store, [json.loads(line)["text"] for line in dev.open()]


def windows(tokenizer, texts: list[str], length: int = 128, budget: int = 20_000, seed: int = 0):
    """One seeded window per dev document until `budget` tokens, framed as twofold.eval.tasks.lm frames them."""
    return text_windows(texts, tokenizer, length, budget, seed)


def baselines(tokenizer, store: Path, dev_windows) -> dict:
    counts = np.bincount(np.asarray(TokenStore(store).tokens), minlength=tokenizer.vocab_size).astype(float)
    inputs, labels = mask_windows(dev_windows, tokenizer, 0.15, 0)
    golds = [t for row in labels for t in row if t >= 0]
    top = int(counts.argmax())
    probs = (counts + 1) / (counts.sum() + len(counts))
    targets = [t for w in dev_windows for t in w[1:]]
    return {"most_frequent_acc": sum(g == top for g in golds) / len(golds),
            "unigram_ppl": math.exp(-float(np.mean(np.log(probs[targets]))))}


@torch.no_grad()
def scores(pair: Path, tokenizer, dev_windows, encoder_only: bool = False) -> dict:
    encoder = RunDir(pair / "encoder").model().eval()
    inputs, labels = mask_windows(dev_windows, tokenizer, 0.15, 0)
    pad = tokenizer.special.pad
    right = total = 0
    nll = 0.0
    for start in range(0, len(inputs), 32):
        losses, argmax, gold = _target_nll(encoder, inputs[start:start + 32], labels[start:start + 32], pad)
        right += int((argmax == gold).sum())
        total += gold.numel()
        nll += float(losses.double().sum())
    if encoder_only:
        return {"mlm_acc": right / total, "mlm_loss": nll / total}
    decoder = RunDir(pair / "decoder").model().eval()
    dnll, count = 0.0, 0
    for start in range(0, len(dev_windows), 32):
        chunk = dev_windows[start:start + 32]
        losses, _, _ = _target_nll(decoder, chunk, [w[1:] + [-100] for w in chunk], pad)
        dnll += float(losses.double().sum())
        count += losses.numel()
    return {"mlm_acc": right / total, "mlm_loss": nll / total, "decoder_ppl": math.exp(dnll / count)}


def parse(config: str) -> tuple[str, list[str], dict, int]:
    name, _, sets = config.partition(":")
    overrides, shape, vocab = [], {}, 4096
    for item in filter(None, sets.split(",")):
        key, _, value = item.partition("=")
        if key == "shape":
            fields = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")
            shape.update(zip(fields, (int(v) for v in value.split("+"))))
        elif key == "init":
            shape["initializer_range"] = float(value)
        elif key == "vocab":
            vocab = int(value)
        else:
            overrides.append(item)
    return name, overrides, shape, vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="1.5M", help="training tokens per member")
    parser.add_argument("--config", action="append", required=True, help="NAME:SET,SET,... (see above)")
    parser.add_argument("--out", default="/tmp/demo_sweep")
    parser.add_argument("--encoder-only", action="store_true", help="train and score the encoder only")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.out)
    for config in args.config:
        name, overrides, shape, vocab = parse(config)
        tokenizer, store, dev_texts = corpus(root, vocab)
        dev_windows = windows(tokenizer, dev_texts)
        if shape:
            PRESETS["sweep"] = {**PRESETS["demo"], **shape}
            overrides = [*overrides, "model=sweep"]
        recipe = load_recipe("demo", overrides=[o.replace("+", ",") for o in overrides],
                             budget=int(parse_number(args.budget)))
        pair = root / "runs" / name
        shutil.rmtree(pair, ignore_errors=True)
        began = time.perf_counter()

        options = Options(stores=(str(store),), progress=False)
        if args.encoder_only:
            start_member(pair / "encoder", recipe, options, World())
        else:
            start_pair(pair, recipe, options, World())
        seconds = time.perf_counter() - began
        row = {"name": name, "sets": config.partition(":")[2], "budget": args.budget, "train_s": round(seconds),
               **scores(pair, tokenizer, dev_windows, args.encoder_only), **baselines(tokenizer, store, dev_windows)}
        shutil.rmtree(pair, ignore_errors=True)
        print(json.dumps(row), flush=True)
        with (root / "results.jsonl").open("a") as file:
            file.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
