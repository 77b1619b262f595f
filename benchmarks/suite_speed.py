"""What the suites cost on a demo-shaped pair (random weights; 4 layers, hidden 128, 4096-token BPE).

1. The encoder's masked-LM pseudo-log-likelihood (`twofold-mlm`) against the decoder's
   log-likelihood through lm-eval's own `hf` model, on the same (context, continuation)
   requests: continuation tokens scored per second, and the ratio.
2. The rank1 scorer: passages per second, with no reasoning and with `--think-tokens 16`.
3. Each suite end to end (`twofold eval PAIR --suite …`, both members) on the tests' local
   fixtures (tests/eval/suite_data.py): seconds per suite, library start-up included.

    python benchmarks/suite_speed.py [--requests 128] [--passages 64] [--skip-suites]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def demo_pair(root: Path) -> Path:
    import twofold
    from twofold.data.stdlib import stdlib_documents
    from twofold.data.tokenizer import train_tokenizer
    from twofold.model import TwofoldModel, preset

    tokenizer = train_tokenizer((d.text for d in stdlib_documents("train", packages=["json", "email", "asyncio"])),
                                4096, root / "tokenizer")
    s = tokenizer.special
    for member, causal in (("encoder", False), ("decoder", True)):
        config = preset("demo", causal=causal, vocab_size=tokenizer.vocab_size, cls_token_id=s.cls,
                        sep_token_id=s.sep, pad_token_id=s.pad, mask_token_id=s.mask, bos_token_id=s.bos,
                        eos_token_id=s.eos)
        twofold.save(TwofoldModel(config), root / "pair" / member, tokenizer=root / "tokenizer")
    return root / "pair"


def requests(count: int) -> list[tuple[str, str]]:
    """Held-out stdlib functions: the first 200 characters as context, the next 60 as continuation."""
    from twofold.data.stdlib import documented_functions

    functions = [f.code for f in documented_functions("held-out") if len(f.code) > 300][:count]
    return [(code[:200], code[200:260]) for code in functions]


def scorer_speeds(pair: Path, count: int) -> None:
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from twofold.eval.mlm_scoring import count_scored_tokens, pseudo_loglikelihood

    torch.set_num_threads(2)
    asked = requests(count)
    encoder = AutoModelForMaskedLM.from_pretrained(pair / "encoder").eval()
    tokenizer = AutoTokenizer.from_pretrained(pair / "encoder")
    tokens = count_scored_tokens(tokenizer, asked)
    pseudo_loglikelihood(encoder, tokenizer, asked[:4], batch_size=64)  # warm-up
    started = time.perf_counter()
    pseudo_loglikelihood(encoder, tokenizer, asked, batch_size=64)
    encoder_seconds = time.perf_counter() - started
    lm = HFLM(pretrained=str(pair / "decoder"), device="cpu", batch_size=64, dtype="float32")
    instances = [Instance("loglikelihood", {}, request, i) for i, request in enumerate(asked)]
    lm.loglikelihood(instances[:4], disable_tqdm=True)
    started = time.perf_counter()
    lm.loglikelihood(instances, disable_tqdm=True)
    decoder_seconds = time.perf_counter() - started
    enc, dec = tokens / encoder_seconds, tokens / decoder_seconds
    print(f"{len(asked)} requests, {tokens} continuation tokens (~{tokens / len(asked):.0f} each, context ~200 chars)")
    print(f"encoder PLL (twofold-mlm, batch 64): {encoder_seconds:.2f} s, {enc:,.0f} tokens/s")
    print(f"decoder log-likelihood (lm-eval hf, batch 64): {decoder_seconds:.2f} s, {dec:,.0f} tokens/s")
    print(f"ratio decoder/encoder: {dec / enc:.1f}x (the PLL runs one forward pass per continuation token)")


def rank1_speed(pair: Path, count: int) -> None:
    from twofold.data.stdlib import documented_functions
    from twofold.eval.suites.rank1 import Rank1Scorer

    functions = [f for f in documented_functions("held-out") if f.docstring.strip()][:count]
    pairs = [(f.docstring.strip().splitlines()[0], f.code[:1000]) for f in functions]
    for think in (0, 16):
        scorer = Rank1Scorer(pair / "decoder", think_tokens=think, batch_size=16)
        scorer.scores(pairs[:2])
        started = time.perf_counter()
        scorer.scores(pairs)
        seconds = time.perf_counter() - started
        print(f"rank1 scorer, --think-tokens {think}: {len(pairs)} passages (~1000 chars) in {seconds:.2f} s, "
              f"{len(pairs) / seconds:.1f} passages/s")


def suite_costs(pair: Path, root: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tools import suite_data

    data = suite_data.write_glue(root / "data")
    suite_data.write_followir(data / "mteb" / "Core17InstructionRetrieval")
    suite_data.write_multilingual_retrieval(data / "mteb" / "CodeSearchNetRetrieval",
                                            ["python", "javascript", "go", "ruby", "java", "php"])
    suite_data.write_beir(data / "tiny")
    suite_data.write_lmeval(data / "lm-eval", "tiny_mc", [
        {"context": c, "choices": [" os", " sys", " json"], "gold": 0} for c, _ in requests(32)])
    suite_data.write_lmeval(data / "lm-eval", "tiny_ll", [{"context": c, "target": t} for c, t in requests(32)],
                            kind="loglikelihood")
    runs = {
        "glue (cola, stsb, mrpc; 24 train / 8 dev each; 1 lr, 1 epoch)":
            ["--suite", "glue", "--tasks", "cola,stsb,mrpc", "--lr", "3e-4", "--epochs", "1",
             "--finetune-batch-size", "8", "--max-length", "64"],
        "csn (6 languages x 8 queries / 8 documents, raw export)": ["--suite", "csn"],
        "followir (Core17-shaped, 4 queries x 2 instructions, 8 documents)":
            ["--suite", "followir", "--tasks", "Core17InstructionRetrieval"],
        "lm-eval (32 multiple-choice x 3 choices + 32 log-likelihood, ~15 tokens each)":
            ["--suite", "lm-eval", "--tasks", "tiny_mc,tiny_ll"],
        "rank1 (BM25 top 8 of 8 queries reranked, decoder only)": ["--suite", "rank1", "--tasks", "tiny",
                                                                   "--depth", "8"],
    }
    for name, flags in runs.items():
        out = root / "out" / flags[1]
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "twofold", "eval", str(pair), *flags, "--data-dir", str(data),
                        "--out", str(out)], check=True, capture_output=True, cwd=ROOT)
        print(f"{name}: {time.perf_counter() - started:.0f} s (both members, start-up included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--passages", type=int, default=64)
    parser.add_argument("--skip-suites", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="suite-speed-"))
    try:
        pair = demo_pair(root)
        scorer_speeds(pair, args.requests)
        rank1_speed(pair, args.passages)
        if not args.skip_suites:
            suite_costs(pair, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
