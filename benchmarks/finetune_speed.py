"""twofold's `embed` fine-tune against the same Sentence Transformers training written directly.

Same export, same rows (hard negatives mined once, outside both timings), same loss
(CachedMultipleNegativesRankingLoss), batch, sampler, learning rate and seed. Timed: the
training call alone on each side (twofold: `twofold.finetune.tasks` via `finetune`'s trainer
path; direct: SentenceTransformerTrainer set up by hand). Prints both and the ratio.

    python benchmarks/finetune_speed.py [--export DIR] [--rows 256] [--batch 32] [--repeats 3]

Without --export it builds a tiny random encoder and tokenizer (no download).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def tiny_export(root: Path) -> Path:
    import twofold
    from twofold.data.stdlib import stdlib_documents
    from twofold.data.tokenizer import train_tokenizer
    from twofold.model import TwofoldModel, preset

    tokenizer = train_tokenizer((d.text for d in stdlib_documents("train", packages=["json", "email"])), 1024,
                                root / "tokenizer")
    s = tokenizer.special
    config = preset("demo", vocab_size=tokenizer.vocab_size, cls_token_id=s.cls, sep_token_id=s.sep,
                    pad_token_id=s.pad, mask_token_id=s.mask, bos_token_id=s.bos, eos_token_id=s.eos)
    return twofold.save(TwofoldModel(config), root / "encoder", tokenizer=root / "tokenizer")


def direct(export: Path, rows, recipe, workdir: Path) -> float:
    """The training a Sentence Transformers user would write, timed around trainer.train()."""
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
        models,
    )
    from sentence_transformers.training_args import BatchSamplers

    transformer = models.Transformer(str(export), max_seq_length=recipe.max_length)
    model = SentenceTransformer(modules=[transformer, models.Pooling(transformer.get_embedding_dimension(), "mean")])
    args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir), num_train_epochs=recipe.epochs, per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rates[0], warmup_steps=recipe.warmup_ratio, weight_decay=recipe.weight_decay,
        seed=recipe.seed, data_seed=recipe.seed, save_strategy="no", report_to="none",
        batch_sampler=BatchSamplers.NO_DUPLICATES, disable_tqdm=True)
    loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=recipe.mini_batch_size)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=rows, loss=loss)
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def ours(export: Path, rows, recipe, workdir: Path) -> float:
    """twofold's path: the task table's build + train (what `twofold finetune embed` runs per learning rate)."""
    from twofold.finetune import resolve
    from twofold.finetune.tasks import TASK_TABLE, OrderRecorder

    task = TASK_TABLE["embed"]
    model = task.build(resolve(export, workdir), recipe)
    started = time.perf_counter()
    task.train(model, rows, recipe, recipe.learning_rates[0], workdir / "trainer", OrderRecorder(None))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from datasets import Dataset

    from twofold.finetune import recipe_for
    from twofold.finetune.datasets import stdlib_retrieval

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        export = Path(args.export) if args.export else tiny_export(root)
        data = stdlib_retrieval(("asyncio", "email", "json", "unittest", "multiprocessing"))
        rows = Dataset.from_list(data.train[:args.rows])
        recipe = recipe_for("embed", batch_size=args.batch, mini_batch_size=args.batch, max_length=128,
                            hard_negatives=0)
        times = {"direct": [], "twofold": []}
        for i in range(args.repeats):  # alternate, so machine load hits both alike
            times["direct"].append(direct(export, rows, recipe, root / f"d{i}"))
            times["twofold"].append(ours(export, rows, recipe, root / f"t{i}"))
            print(f"run {i}: direct {times['direct'][-1]:.2f} s, twofold {times['twofold'][-1]:.2f} s", flush=True)
        best = {k: min(v) for k, v in times.items()}
        print(f"best of {args.repeats}: direct {best['direct']:.2f} s, twofold {best['twofold']:.2f} s, "
              f"ratio twofold/direct {best['twofold'] / best['direct']:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
