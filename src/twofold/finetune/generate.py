"""One call for a generative fine-tune and its chrF before and after (what the demo calls).

    from twofold.finetune.generate import finetune_generate
    found = finetune_generate("runs/demo/export/decoder", "stdlib", "runs/ft/gen-dec", seed=1,
                              learning_rates=(3e-4,), epochs=2, batch_size=16, max_length=128,
                              max_train=1000, max_test=100)
    found["chrf_before"], found["chrf_after"]
"""

from __future__ import annotations

import time
from pathlib import Path

from twofold.finetune.generation_data import GenerationData, load_generation
from twofold.finetune.inputs import BaseModel
from twofold.finetune.recipes import recipe_for
from twofold.finetune.run import finetune


def finetune_generate(model: str | Path | BaseModel, data: str | GenerationData, out: str | Path, seed: int = 0, *,
                      packages: tuple[str, ...] | None = None, max_train: int | None = None,
                      max_test: int | None = None, name: str | None = None, say=print, **recipe) -> dict:
    """Fine-tune the decoder `model` on prompt -> completion `data` and score it before and after.

    `model`: an HF export, a run, RUN@TAG or a checkpoint (an encoder is refused: continue it as
    a decoder with `twofold train --init-from` first). `data`: a `GenerationData`, or a spec that
    `load_generation` reads (`"stdlib"`: code -> its docstring's first line, tested on the held-out
    modules; `packages`, `max_train` and `max_test` apply to specs only). `seed` seeds the recipe
    and the dev split. `recipe`: keys of `twofold.finetune.Recipe` overriding the generate recipe
    (`learning_rates`, `epochs`, `batch_size`, `max_length`, `max_new_tokens`, …). Writes `out`
    (the model, `finetune.json`, `results/`) like every fine-tune.

    Returns {"model", "kind", "out", "learning_rate", "chrf_before", "chrf_after", "before",
    "after" (test chrf, chrf++, bleu, exact_match), "examples" (train/dev/test sizes), "seconds",
    "results" (the two `Result`s written to out/results)}.
    """
    recipe = recipe_for("generate", **{**recipe, "seed": seed})
    if not isinstance(data, GenerationData):
        data = load_generation(data, seed=seed, packages=packages, max_train=max_train, max_test=max_test)
    started = time.perf_counter()
    result = finetune("generate", model, data, out, recipe, name=name, say=say)
    return {"model": result.model, "kind": result.kind, "out": result.out, "learning_rate": result.learning_rate,
            "chrf_before": result.before["chrf"], "chrf_after": result.test["chrf"], "before": result.before,
            "after": result.test, "examples": {"train": len(data.train), "dev": len(data.dev), "test": len(data.test)},
            "seconds": round(time.perf_counter() - started, 2), "results": result.results}
