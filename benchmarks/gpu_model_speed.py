#!/usr/bin/env python
"""GPU training-step speed and model FLOPs utilisation (MFU): twofold vs transformers.

bf16 autocast (fp32 master weights, AdamW), shape of `ettin-150m`, sequences of 1024 tokens.
Ours runs packed (cu_seqlens; PyTorch's varlen_attn, flash-attn's where installed) with sparse prediction;
transformers runs padded with `flash_attention_2` if flash-attn is installed, else `sdpa`.
Cases: encoder MLM at 30% masking (transformers' default dense head, and sparse_prediction=True)
and decoder CLM. Batches, timing and interleaving are those of `model_speed.py`.

MFU = model FLOPs per step / step time / the card's dense bf16 peak. Model FLOPs are the same
number for both implementations and the trainer's (`twofold.model.flops.training_flops`): 3 x
forward matmul FLOPs (projections, MLP, attention scores over the keys each query may see, and the
head on the positions that have a target), so work spent on padding or on logits nobody asked for
counts as waste.

    python benchmarks/gpu_model_speed.py                 # on a CUDA machine
    python benchmarks/gpu_model_speed.py --smoke         # tiny shape, 2 steps: runs on CPU too
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_speed import Case, build_models, make_batch, make_step  # noqa: E402

from twofold.model import preset  # noqa: E402
from twofold.model.flops import peak_flops, training_flops  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="ettin-150m")
    parser.add_argument("--seq", type=int, default=1024, help="tokens per sequence (default 1024)")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step (default 16)")
    parser.add_argument("--variable", action="store_true", help="lengths uniform in [seq/16, seq] instead of fixed")
    parser.add_argument("--cases", default="mlm,clm", help="mlm, clm or both")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the card's bf16 dense peak")
    parser.add_argument("--hf-attn", default=None,
                        help="transformers attention implementation (default: flash_attention_2 if installed, "
                             "else sdpa; on CPU sdpa and eager)")
    parser.add_argument("--no-autocast", action="store_true", help="fp32 instead of bf16 autocast")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shape, 2 steps: proves the script runs (CPU is fine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.seq, args.batch, args.steps, args.warmup = "tiny", 64, 2, 2, 1
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(min(torch.get_num_threads(), 4))
    peak = args.peak_tflops or (peak_flops(device) or 0) / 1e12 or None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    import transformers

    print(f"device {name}; peak bf16 {peak or 'unknown'} TFLOPS; torch {torch.__version__}; transformers "
          f"{transformers.__version__}; {args.preset}, batch {args.batch} x {args.seq}, "
          f"{'fp32' if args.no_autocast else 'bf16 autocast'}", flush=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.no_autocast)

    results = []
    for kind in [c.strip() for c in args.cases.split(",") if c.strip()]:
        if kind not in ("mlm", "clm"):
            parser.error(f"unknown case {kind!r}; choose mlm or clm")
        case = Case(f"{kind}-{args.seq}", kind, args.variable, args.batch, 0.0, f"{kind} {args.preset}")
        cfg = preset(args.preset, causal=kind == "clm")
        impls = [args.hf_attn] if args.hf_attn else None
        try:
            models = build_models(case, cfg, device, args.seed, sparse_too=True, impls=impls)
        except (ImportError, ValueError) as error:  # e.g. flash_attention_2 refused: fall back to sdpa
            print(f"transformers attention {impls or 'default'} failed ({error}); using sdpa", flush=True)
            models = build_models(case, cfg, device, args.seed, sparse_too=True, impls=["sdpa"])
        steps = {n: make_step(case, n, m) for n, m in models.items()}
        rates = {n: [] for n in models}
        flops = []
        for i in range(args.warmup + args.steps):
            batch = make_batch(case, i, args.seed, cfg, max(1, args.seq // 16), args.seq, device)
            targets = int((batch.flat_labels != -100).sum())
            for n, step in steps.items():
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                with autocast:
                    step(batch)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i >= args.warmup:
                    rates[n].append(batch.tokens / (time.perf_counter() - t0))
            if i >= args.warmup:
                flops.append(training_flops(cfg, batch.lengths, targets) / batch.tokens)
        del models, steps
        flops_per_token = statistics.mean(flops)
        for n, r in rates.items():
            tps = statistics.median(r)
            mfu = tps * flops_per_token / (peak * 1e12) if peak else None
            results.append({"case": kind, "model": n, "tokens_per_s": tps, "model_tflops": tps * flops_per_token / 1e12,
                            "mfu": mfu})
        ours = statistics.median(rates["ours"])
        for n in rates:
            if n != "ours":
                results.append({"case": kind, "model": f"ours / {n}", "ratio": ours / statistics.median(rates[n])})

    print(f"\n{'case':<5} {'model':<32} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU':>7} {'ratio':>7}")
    for r in results:
        tps = f"{r['tokens_per_s']:.0f}" if "tokens_per_s" in r else ""
        tflops = f"{r['model_tflops']:.3g}" if "model_tflops" in r else ""
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else ""
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        print(f"{r['case']:<5} {r['model']:<32} {tps:>10} {tflops:>8} {mfu:>7} {ratio:>7}")
    print("TFLOP/s and MFU count model FLOPs (the work the objective needs), the same for every row")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "peak_tflops": peak, "args": vars(args),
                                               "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
