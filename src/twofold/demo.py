"""`twofold demo`: the Ettin experiment in miniature — offline, on a laptop CPU, in minutes.

Stages (each reuses what an earlier demo already built, unless `fresh`):
1. the built-in `stdlib` corpus -> a byte-level BPE trained on its *train* split;
2. token stores of the train split (training) and the held-out split (held-out loss);
3. an encoder and a decoder trained with the scaled three-phase `demo` recipe on identical
   batches (always retrained: the demo is about watching that happen);
4. both exported in the Hugging Face format (with the tokenizer);
5. both evaluated, from the exports, with the same tasks, settings and seed;
6. `report.md` with the training curves, the schedule, the scores and samples.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from twofold.eval import Settings
from twofold.files import check_out

DEMO_VOCAB = 4096
# Training tokens per member: about 3 minutes for the pair on 2 idle cores (docs in README).
DEMO_BUDGET = 1_500_000
HELD_OUT_SEQUENCES = 16  # the fixed held-out set scored at every checkpoint
# Sample sizes that keep the evaluation of both members around two minutes on 2 cores.
DEMO_EVAL = Settings(max_length=128, lm_tokens=10_000, pseudo_perplexity_tokens=256, max_queries=300,
                     max_examples=1_000, epochs=2, learning_rate=3e-4)


# Everything the demo writes into its folder (hidden names: partial outputs of a killed run).
DEMO_ENTRIES = {"tokenizer", "store", "pair", "export", "eval", "report.md", "loss.png", "schedule.png",
                "scores.png", "vs-parameters.png", "vs-tokens.png"}


def made_by_demo(root: Path) -> bool:
    return all(entry.name in DEMO_ENTRIES or entry.name.startswith(".") for entry in root.iterdir())


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def store(self) -> Path:
        return self.root / "store" / "train"

    @property
    def held_out_store(self) -> Path:
        return self.root / "store" / "held-out"

    @property
    def pair(self) -> Path:
        return self.root / "pair"

    def export(self, member: str) -> Path:
        return self.root / "export" / member

    @property
    def eval(self) -> Path:
        return self.root / "eval"


def run_demo(out: str | Path = "runs/demo", budget: int | None = None, fresh: bool = False,
             settings: Settings = DEMO_EVAL, packages: tuple[str, ...] = (), progress: bool = True,
             say=print) -> Path:
    """Run every stage; return the path of `report.md`.

    `budget`: training tokens per member (default `DEMO_BUDGET`). `packages` limits the
    training corpus to some top-level stdlib packages (tests, quick looks); the evaluation
    always uses the whole held-out split.
    """
    from twofold.train.recipe import load_recipe

    layout = DemoLayout(Path(out))
    # --fresh and every rerun delete what an earlier demo made: never a folder of other files
    check_out(layout.root, "demo", holds=made_by_demo, overwrite=True)
    if fresh and layout.root.exists():
        shutil.rmtree(layout.root)
    layout.root.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe("demo", budget=budget or DEMO_BUDGET)
    times: list[float] = []

    prepare_corpus(layout, packages, progress, say, times)
    with _stage("training the pair", say, times):
        _train(layout, recipe, progress, say)
    with _stage("export (Hugging Face format)", say, times):
        _export(layout, say)
    with _stage("evaluation", say, times):
        results = _evaluate(layout, settings, say)
    with _stage("report", say, times):
        report = _report(layout, recipe, results)

    from twofold.report import terminal_table

    say("")
    say(terminal_table(results))
    say(f"\nreport: {report}  (total {sum(times):.0f} s)")
    return report


# ----------------------------------------------------------------------------- stages

def prepare_corpus(layout: DemoLayout, packages: tuple[str, ...] = (), progress: bool = True, say=print,
                   times: list[float] | None = None):
    """Stages 1-2: the tokenizer and the two token stores, reused when already built."""
    times = [] if times is None else times
    with _stage("tokenizer", say, times):
        tokenizer = _tokenizer(layout, packages, say)
    with _stage("token stores", say, times):
        _stores(layout, tokenizer, packages, progress, say)
    return tokenizer


def _tokenizer(layout: DemoLayout, packages: tuple[str, ...], say):
    from twofold.data.stdlib import stdlib_documents
    from twofold.data.tokenizer import load_tokenizer, train_tokenizer

    if (layout.tokenizer / "tokenizer.json").exists():
        say(f"  reusing {layout.tokenizer}")
        return load_tokenizer(layout.tokenizer)
    texts = (document.text for document in stdlib_documents("train", packages or None))
    tokenizer = train_tokenizer(texts, DEMO_VOCAB, layout.tokenizer)
    say(f"  byte-level BPE, {tokenizer.vocab_size} tokens, trained on the stdlib train split")
    return tokenizer


def _stores(layout: DemoLayout, tokenizer, packages: tuple[str, ...], progress: bool, say) -> None:
    from twofold.data.sources import SourceSpec
    from twofold.data.store import TokenStore, prepare_store

    for path, part in ((layout.store, "train"), (layout.held_out_store, "held-out")):
        if path.exists():
            store = TokenStore(path)
            if store.manifest["tokenizer"]["hash"] == tokenizer.hash:
                say(f"  reusing {path}: {store.manifest['num_tokens']:,} tokens")
                continue
            shutil.rmtree(path)  # made with another tokenizer: rebuild
        # `packages` narrows the training corpus only; held-out loss uses the whole held-out split.
        chosen = "+".join(packages) if part == "train" else ""
        spec = SourceSpec(path="stdlib", part=part, name=f"stdlib-{part}", packages=chosen)
        manifest = prepare_store([spec], tokenizer, path, progress=progress)
        say(f"  {path}: {manifest['num_documents']:,} documents, {manifest['num_tokens']:,} tokens ({part} split)")


def _train(layout: DemoLayout, recipe, progress: bool, say) -> None:
    from twofold.train.distributed import World
    from twofold.train.loop import Options
    from twofold.train.runs import start_pair
    from twofold.train.show import human_tokens

    if layout.pair.exists():
        shutil.rmtree(layout.pair)  # the demo always shows training happen
    tokens = sum(phase.tokens for phase in recipe.phases)
    say(f"  recipe demo: {', '.join(p.name for p in recipe.phases)}; {human_tokens(tokens)} tokens per member, "
        "encoder (MLM) then decoder (CLM) on identical batches")
    options = Options(stores=(str(layout.store),), eval_stores=(str(layout.held_out_store),),
                      eval_sequences=HELD_OUT_SEQUENCES, progress=progress)
    start_pair(layout.pair, recipe, options, World())


def _export(layout: DemoLayout, say) -> None:
    from twofold.train.rundir import PairDir

    for member in ("encoder", "decoder"):
        path = PairDir(layout.pair).member(member).export(layout.export(member), overwrite=True)
        auto = "AutoModelForCausalLM" if member == "decoder" else "AutoModelForMaskedLM"
        say(f"  {member}: {path} (loads with transformers' {auto})")


def _evaluate(layout: DemoLayout, settings: Settings, say):
    from twofold.data.tokenizer import load_tokenizer
    from twofold.eval import evaluate_pair, save_results
    from twofold.hf import load

    encoder = load(layout.export("encoder")).eval()
    decoder = load(layout.export("decoder")).eval()
    tokenizer = load_tokenizer(layout.export("encoder"))
    results = evaluate_pair(encoder, decoder, tokenizer, settings=settings)
    if layout.eval.exists():
        shutil.rmtree(layout.eval)
    save_results(results, layout.eval)
    say(f"  {len(results)} results in {layout.eval}")
    return results


def _report(layout: DemoLayout, recipe, results) -> Path:
    from twofold.report import plot_training, write_report
    from twofold.train.rundir import MEMBERS, PairDir
    from twofold.train.show import plot_recipe

    members = {member: PairDir(layout.pair).member(member) for member in MEMBERS}
    plot_training(members, layout.root / "loss.png")
    plot_recipe(recipe, layout.root / "schedule.png")
    training = "\n\n".join([
        "## Training",
        "Both members saw the same token sequences in the same order (their batch-order logs hash "
        f"equal at every step: `{layout.pair}/<member>/<phase>/data_order`); only the attention mask "
        "and the objective differ.",
        "![loss](loss.png)",
        "![schedule](schedule.png)",
        "## Reproduce",
        "```\nmake demo                      # or: twofold demo --out runs/demo [--budget 1M] [--fresh]\n"
        f"twofold eval {layout.export('encoder')}\n"
        f"twofold compare {layout.eval}\n```",
    ])
    return write_report(results, layout.root, title="twofold demo: an encoder and a decoder trained alike",
                        sections=[training])


@contextmanager
def _stage(name: str, say, times: list[float]):
    """Announce a stage and time it."""
    say(f"[{name}]")
    start = time.perf_counter()
    yield
    times.append(time.perf_counter() - start)
    say(f"  done in {times[-1]:.0f} s")
