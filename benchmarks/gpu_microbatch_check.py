"""On a GPU: a micro-batch too large for the card is halved until a step passes, and trains what
the explicit smaller micro-batch trains.

The card is capped at --limit-gib (torch.cuda.set_per_process_memory_fraction) and the memory
estimate is told the card is huge (TWOFOLD_MEMORY_BYTES=1T), so the trainer starts from the
whole step (64 sequences of 1024 tokens, ettin-17m, fp32) in one forward pass, runs out of
memory, and halves. Then the same run with `--micro-batch` set to the micro-batch it ended
with must give the same losses (1e-4 relative: GPU kernels may sum in another order) and the
micro-batch must be smaller than the step.

    python benchmarks/gpu_microbatch_check.py OUT_DIR               # on a CUDA machine, ~1 minute
    python benchmarks/gpu_microbatch_check.py --smoke OUT_DIR       # CPU, tiny model: the plumbing,
        # with torch.cuda.OutOfMemoryError raised by a stand-in above 2 sequences per forward pass

Prints one `PASS  microbatch (…)` or `FAIL  microbatch (…)` line (benchmarks/gpu_check.sh's
summary format); the exit status is 0 on PASS. `check(out_dir, smoke=False)` is the same as a
function.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

RECIPE = """\
model: {model}
seed: 21
optimizer: {{name: stable_adamw, lr: 1.0e-3, betas: [0.9, 0.98], eps: 1.0e-6, weight_decay: 1.0e-5}}
dropout: {{attention_output: 0.1}}
phase:
  pretrain: {{tokens: {tokens}, seq_len: {seq_len}, mask_rate: 0.3, batch_sequences: {batch},
             checkpoint_every_tokens: 1T, tag: step}}
"""


def _store(out: Path, smoke: bool) -> Path:
    from twofold.data.sources import SourceSpec
    from twofold.data.stdlib import stdlib_documents
    from twofold.data.store import prepare_store
    from twofold.data.tokenizer import train_tokenizer

    packages = ["json", "email"] if smoke else ["json", "email", "asyncio", "collections"]
    if not (out / "store" / "manifest.json").is_file():
        texts = (d.text for d in stdlib_documents(packages=packages))
        tokenizer = train_tokenizer(texts, 512 if smoke else 8192, out / "tokenizer")
        prepare_store([SourceSpec("stdlib", packages="+".join(packages))], tokenizer, out / "store", progress=False)
    return out / "store"


def _losses(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if "loss" in line]


def check(out_dir: str | Path, smoke: bool = False, limit_gib: float = 6.0) -> tuple[bool, str]:
    import torch

    from twofold.train import loop, microbatch, runs
    from twofold.train.distributed import World
    from twofold.train.recipe import load_recipe

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = _store(out, smoke)
    batch, seq_len = (8, 64) if smoke else (64, 1024)
    recipe_file = out / "recipe.yaml"
    recipe_file.write_text(RECIPE.format(model="tiny" if smoke else "ettin-17m", tokens=3 * batch * seq_len,
                                         seq_len=seq_len, batch=batch))
    recipe = load_recipe(str(recipe_file))
    if smoke:
        device = torch.device("cpu")
        real = loop.forward

        def stand_in(model, part):  # what a capped card does: runs out above 2 sequences
            result = real(model, part)
            if part.num_sequences > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")
            return result

        loop.forward, microbatch.recovers = stand_in, lambda device: True
    else:
        device = torch.device("cuda")
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit_gib * 2**30 / torch.cuda.mem_get_info()[1]))
    world = World(device=device)
    options = loop.Options(stores=(str(store),), objective="mlm", progress=False, precision="fp32")
    os.environ[microbatch.MEMORY_ENV] = "1T"  # the estimate lets the whole step try first
    try:
        halved = runs.start(out / "halved", recipe, options, world)
    finally:
        del os.environ[microbatch.MEMORY_ENV]
        if smoke:
            loop.forward = real
    chosen = {line["micro_batch_sequences"] for line in _losses(halved)}
    if len(chosen) != 1 or next(iter(chosen)) >= batch:
        return False, f"the micro-batches were {sorted(chosen)} for a step of {batch} sequences: nothing was halved"
    micro = chosen.pop()
    explicit = runs.start(out / "explicit", recipe, options.replace(micro_batch_sequences=micro), world)
    a, b = [line["loss"] for line in _losses(halved)], [line["loss"] for line in _losses(explicit)]
    same = len(a) == len(b) == 3 and all(abs(x - y) <= 1e-4 * abs(y) for x, y in zip(a, b))
    where = "CPU stand-in" if smoke else f"{torch.cuda.get_device_name(device)} capped at {limit_gib:g} GiB"
    return same, (f"{batch} sequences a step halved to {micro} per forward pass on the {where}; losses "
                  f"{[round(x, 5) for x in a]} vs explicit --micro-batch {micro} {[round(y, 5) for y in b]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="a folder to write the store and runs into")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, stand-in out-of-memory")
    parser.add_argument("--limit-gib", type=float, default=6.0, help="GPU memory the runs may use")
    args = parser.parse_args()
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("FAIL  microbatch (no CUDA device; --smoke checks the plumbing on CPU)")
        return 1
    passed, detail = check(args.out, smoke=args.smoke, limit_gib=args.limit_gib)
    print(f"{'PASS' if passed else 'FAIL'}  microbatch ({detail})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
