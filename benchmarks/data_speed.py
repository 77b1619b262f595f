"""Data pipeline speed: `prepare` vs bare `tokenizers`, and the loader vs the training step.

1. prepare throughput on the built-in `stdlib` corpus against a bare
   `tokenizers.Tokenizer.encode_batch` over the same texts, in the same process
   (target: ratio >= 0.7, i.e. pipeline overhead <= 30%);
2. the loader's rate of packed, MLM-masked batches of seq_len 1024 (batches/s, tokens/s),
   and, when `twofold.model` is present, the rate at which an `ettin-17m` training step
   (forward + backward + AdamW) consumes the same batches (target: loader >= 20x).

    python benchmarks/data_speed.py [--vocab-size 16384] [--batch 8] [--steps 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from twofold.data.loader import BatchLoader
from twofold.data.mixture import Mixture
from twofold.data.sources import SourceSpec
from twofold.data.stdlib import stdlib_documents
from twofold.data.store import prepare_store
from twofold.data.tokenizer import load_tokenizer, train_tokenizer


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def bench_prepare(tokenizer, workdir: Path, repeats: int) -> tuple[float, float, int]:
    """Best of `repeats` for each, the two interleaved so that load from other processes
    on the machine hits both alike."""
    texts = [d.text for d in stdlib_documents()]
    characters = sum(len(t) for t in texts)
    bare, pipeline = [], []
    for run in range(repeats):
        bare.append(timed(lambda: tokenizer.backend.encode_batch(texts, add_special_tokens=False)))
        out = workdir / f"store{run}"
        pipeline.append(timed(lambda: prepare_store([SourceSpec("stdlib")], tokenizer, out, progress=False)))  # noqa: B023
    return characters / min(bare), characters / min(pipeline), characters


def bench_loader(store: Path, batch: int, steps: int, workers: int) -> float:
    loader = BatchLoader([store], Mixture(temperature=0.7), seq_len=1024, batch_size=batch,
                         objective="mlm", seed=21, num_workers=workers)
    batches = iter(loader)
    next(batches)  # start-up (workers, first epoch permutation) is not the steady rate
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    return steps / (time.perf_counter() - start)


def bench_train_step(store: Path, batch: int, steps: int, tokenizer) -> float | None:
    try:
        from twofold.model import TwofoldModel, preset
    except ImportError:
        return None
    s = tokenizer.special  # the table at the tokenizer's size, its ids in range (the preset's are ModernBERT's)
    model = TwofoldModel(preset("ettin-17m", vocab_size=tokenizer.vocab_size, cls_token_id=s.cls, sep_token_id=s.sep,
                                pad_token_id=s.pad, mask_token_id=s.mask, bos_token_id=s.bos, eos_token_id=s.eos))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = BatchLoader([store], Mixture(temperature=0.7), seq_len=1024, batch_size=batch,
                         objective="mlm", seed=21)
    batches = [loader.batch(step) for step in range(steps + 1)]

    def step(b):
        output = model(b.input_ids, labels=b.labels, cu_seqlens=b.cu_seqlens,
                       max_seqlen=b.max_seqlen, position_ids=b.position_ids)
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up
    start = time.perf_counter()
    for b in batches[1:]:
        step(b)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", help="tokenizer to use (default: train a BPE on stdlib)")
    parser.add_argument("--vocab-size", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="sequences per batch (micro-batch)")
    parser.add_argument("--steps", type=int, default=50, help="loader batches to time")
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}, "
          f"torch {torch.__version__}, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.tokenizer:
            tokenizer = load_tokenizer(args.tokenizer)
        else:
            texts = (d.text for d in stdlib_documents())
            tokenizer = train_tokenizer(texts, args.vocab_size, workdir / "tokenizer")
        print(f"tokenizer: byte-level BPE, vocab {tokenizer.vocab_size}")

        bare, pipeline, characters = bench_prepare(tokenizer, workdir, args.repeats)
        print(f"\nprepare on stdlib ({characters / 1e6:.1f} M characters), best of {args.repeats}:")
        print(f"  bare tokenizers encode_batch   {bare / 1e6:6.2f} M chars/s")
        print(f"  twofold data prepare           {pipeline / 1e6:6.2f} M chars/s")
        print(f"  ratio prepare / bare           {pipeline / bare:6.2f}   (target >= 0.7)")

        store = workdir / "store0"
        tokens = args.batch * 1024
        print(f"\nloader: packed MLM batches of {args.batch} x 1024 tokens:")
        rates = {}
        for workers in (0, 2):
            rates[workers] = bench_loader(store, args.batch, args.steps, workers)
            print(f"  num_workers={workers}   {rates[workers]:8.1f} batches/s   "
                  f"{rates[workers] * tokens / 1e6:6.2f} M tokens/s")
        train = bench_train_step(store, args.batch, args.train_steps, tokenizer)
        if train is None:
            print("  (twofold.model not importable: no training-step comparison)")
        else:
            best = max(rates.values())
            print(f"  ettin-17m train step (fwd+bwd+AdamW, CPU) {train:8.3f} steps/s   "
                  f"{train * tokens / 1e3:6.1f} k tokens/s")
            print(f"  ratio loader / train step      {best / train:8.0f}x  (target >= 20x)")


if __name__ == "__main__":
    main()
