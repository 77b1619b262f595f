#!/usr/bin/env python
"""Training-step (and embedding) speed of twofold's model against transformers' ModernBERT.

In one process and on one config (the shape of `ettin-17m`, vocab 50,368, fp32), each case
runs the same seeded batches through:
  - ours: packed layout (1-D tokens + cu_seqlens), sparse prediction (head only on targets);
  - transformers: padded layout (right padding to the batch's longest sequence, attention_mask),
    with each attention implementation that counts as "fastest on the device" (CPU: `sdpa`
    and `eager`, the faster one is the baseline; GPU: `flash_attention_2` if installed, else
    `sdpa`). For MLM the headline baseline is transformers' default `sparse_prediction=False`;
    `sparse_prediction=True` is measured as well and its ratio printed.
A training step is forward + backward + AdamW step. Models take turns step by step (so load
from other processes hits all of them alike); warm-up steps are excluded; the reported
figure is the median over timed steps of real (non-pad) tokens per second.

    python benchmarks/model_speed.py                 # all cases (~10 min on 2 idle CPU cores)
    python benchmarks/model_speed.py --quick --cases mlm-var,embed-var --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

import torch

import twofold
from twofold.model import TwofoldModel, preset
from twofold.model.heads import embed

IGNORE = -100


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "mlm", "clm" or "embed"
    variable: bool  # lengths uniform in [min_len, max_len], else all max_len
    batch: int
    target: float  # the ratio to reach
    what: str


CASES = {c.name: c for c in [
    Case("mlm-var", "mlm", True, 16, 2.5, "encoder MLM 30%, lengths U[32,512], batch 16"),
    Case("mlm-fixed", "mlm", False, 8, 1.3, "encoder MLM 30%, length 512, batch 8"),
    Case("clm-var", "clm", True, 16, 1.5, "decoder CLM, lengths U[32,512], batch 16"),
    Case("clm-fixed", "clm", False, 8, 1.0, "decoder CLM, length 512, batch 8"),
    Case("embed-var", "embed", True, 32, 1.5, "encoder embeddings (no grad, mean pool), lengths U[32,512], batch 32"),
]}


# ----------------------------------------------------------------------------- batches

@dataclass
class Batch:
    lengths: list[int]
    # packed (ours)
    flat_ids: torch.Tensor
    cu_seqlens: torch.Tensor
    max_seqlen: int
    flat_labels: torch.Tensor | None
    # padded (transformers)
    ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor | None

    @property
    def tokens(self) -> int:
        return sum(self.lengths)


def make_batch(case: Case, step: int, seed: int, cfg, min_len: int, max_len: int, device) -> Batch:
    """The batch of `step`: a pure function of (seed, case, step), shared by every model."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step * 101 + sum(map(ord, case.name)))
    if case.variable:
        lengths = torch.randint(min_len, max_len + 1, (case.batch,), generator=gen).tolist()
    else:
        lengths = [max_len] * case.batch
    width = max(lengths)
    special = {cfg.cls_token_id, cfg.sep_token_id, cfg.pad_token_id, cfg.mask_token_id, cfg.bos_token_id}
    # ordinary ids: below the special ids (Ettin: 50281..) or above them (small/mmBERT: 0..4)
    low, high = (0, min(special)) if min(special) > cfg.vocab_size // 2 else (max(special) + 1, cfg.vocab_size)
    ids = torch.full((case.batch, width), cfg.pad_token_id, dtype=torch.long)
    mask = torch.zeros((case.batch, width), dtype=torch.long)
    labels = torch.full((case.batch, width), IGNORE, dtype=torch.long) if case.kind != "embed" else None
    flat_labels = []
    for row, n in enumerate(lengths):
        seq = torch.randint(low, high, (n,), generator=gen)
        mask[row, :n] = 1
        if case.kind == "mlm":
            chosen = torch.rand(n, generator=gen) < 0.3
            lab = torch.where(chosen, seq, torch.full_like(seq, IGNORE))
            seq = torch.where(chosen, torch.full_like(seq, cfg.mask_token_id), seq)
            labels[row, :n] = lab
            flat_labels.append(lab)
        elif case.kind == "clm":
            labels[row, :n] = seq  # transformers shifts internally
            flat_labels.append(torch.cat([seq[1:], torch.tensor([IGNORE])]))  # ours: pre-shifted
        ids[row, :n] = seq
    flat_ids = torch.cat([ids[r, :n] for r, n in enumerate(lengths)])
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)
    to = lambda t: None if t is None else t.to(device)
    return Batch(lengths, to(flat_ids), to(cu), width, to(torch.cat(flat_labels)) if flat_labels else None,
                 to(ids), to(mask), to(labels))


# ----------------------------------------------------------------------------- models

def hf_impls(device: torch.device) -> list[str]:
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401
            return ["flash_attention_2"]
        except ImportError:
            return ["sdpa"]
    return ["sdpa", "eager"]


def build_models(case: Case, cfg, device, seed: int, sparse_too: bool,
                 impls: list[str] | None = None) -> dict[str, torch.nn.Module]:
    """Ours and transformers' models (attention `impls`, default `hf_impls`) with identical weights."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    ours = TwofoldModel(cfg).to(device)
    models = {"ours": ours}
    auto = {"mlm": transformers.AutoModelForMaskedLM, "clm": transformers.AutoModelForCausalLM,
            "embed": transformers.AutoModel}[case.kind]
    with tempfile.TemporaryDirectory() as tmp:
        twofold.save(ours, tmp)
        for impl in impls or hf_impls(device):
            models[f"hf-{impl}"] = auto.from_pretrained(tmp, attn_implementation=impl, dtype=torch.float32).to(device)
            if sparse_too and case.kind == "mlm":
                models[f"hf-{impl}-sparse"] = auto.from_pretrained(
                    tmp, attn_implementation=impl, dtype=torch.float32, sparse_prediction=True).to(device)
    return models


def make_step(case: Case, name: str, model: torch.nn.Module):
    """A closure running one step of `model` on a Batch (train step, or no-grad embedding)."""
    if case.kind == "embed":
        model.eval()

        @torch.no_grad()
        def step(b: Batch):
            if name == "ours":
                return embed(model, b.flat_ids, cu_seqlens=b.cu_seqlens, max_seqlen=b.max_seqlen, pooling="mean")
            hidden = model(input_ids=b.ids, attention_mask=b.mask).last_hidden_state
            m = b.mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * m).sum(1) / m.sum(1)
        return step

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(b: Batch):
        opt.zero_grad(set_to_none=True)
        if name == "ours":
            out = model(b.flat_ids, cu_seqlens=b.cu_seqlens, max_seqlen=b.max_seqlen, labels=b.flat_labels)
        else:
            out = model(input_ids=b.ids, attention_mask=b.mask, labels=b.labels)
        out.loss.backward()
        opt.step()
        return out.loss.detach()
    return step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_case(case: Case, args, cfg, device) -> dict:
    models = build_models(case, cfg, device, args.seed, sparse_too=True)
    steps = {name: make_step(case, name, m) for name, m in models.items()}
    rates: dict[str, list[float]] = {name: [] for name in models}
    cpu_rates: dict[str, list[float]] = {name: [] for name in models}  # per CPU-second of this process
    losses: dict[str, list[float]] = {name: [] for name in models}
    for i in range(args.warmup + args.steps):
        if i == args.warmup + 1 and not args.keep_all:
            # After one timed step, keep only the faster transformers implementation (dense and
            # sparse each): the baseline is the fastest, and the slower ones cost minutes.
            for group in (_dense(rates), _sparse(rates)):
                if len(group) > 1:
                    slower = [n for n in group if n != max(group, key=lambda n: rates[n][-1])]
                    for name in slower:
                        steps.pop(name)
                        models.pop(name)
        batch = make_batch(case, i, args.seed, cfg, args.min_len, args.max_len, device)
        seconds = {}
        for name, step in steps.items():  # take turns: background load hits all alike
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            out = step(batch)
            sync(device)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            seconds[name] = dt
            if i >= args.warmup:
                rates[name].append(batch.tokens / dt)
                cpu_rates[name].append(batch.tokens / cpu)
            if out.dim() == 0:
                losses[name].append(float(out))
        print(f"  {case.name} step {i + 1}/{args.warmup + args.steps} ({batch.tokens} tokens"
              f"{', warm-up' if i < args.warmup else ''}): "
              + ", ".join(f"{n} {t:.1f}s" for n, t in seconds.items()), file=sys.stderr, flush=True)
    del models, steps
    median = {name: statistics.median(r) for name, r in rates.items()}
    full = lambda names: [n for n in names if len(rates[n]) == args.steps]  # kept for every step
    best = max(full(_dense(median)), key=median.get)
    result = {
        "case": case.name, "what": case.what, "target": case.target, "tokens_per_s": median,
        "all_tokens_per_s": rates, "baseline": best, "ratio": median["ours"] / median[best],
        # the same batch, back to back: robust to load that drifts between steps
        "paired_ratio": statistics.median(o / b for o, b in zip(rates["ours"], rates[best])),
        "tokens_per_cpu_s": {name: statistics.median(r) for name, r in cpu_rates.items()},
        "ratio_cpu_time": statistics.median(cpu_rates["ours"]) / statistics.median(cpu_rates[best]),
        "first_loss": {n: values[0] for n, values in losses.items() if values},
    }
    sparse = _sparse(median)
    if sparse:
        best_sparse = max(full(sparse), key=median.get)
        result["baseline_sparse"] = best_sparse
        result["ratio_vs_sparse"] = median["ours"] / median[best_sparse]
    return result


def _dense(names) -> list[str]:
    return [n for n in names if n.startswith("hf-") and not n.endswith("-sparse")]


def _sparse(names) -> list[str]:
    return [n for n in names if n.endswith("-sparse")]


def print_table(results: list[dict]) -> None:
    print()
    print(f"{'case':<11} {'model':<20} {'tokens/s':>10} {'tok/cpu-s':>10} {'steps':>5}")
    for r in results:
        for name, rate in r["tokens_per_s"].items():
            mark = "  <- baseline" if name == r["baseline"] else ""
            steps = len(r["all_tokens_per_s"][name])
            print(f"{r['case']:<11} {name:<20} {rate:>10.0f} {r['tokens_per_cpu_s'][name]:>10.0f} {steps:>5}{mark}")
    print()
    print(f"{'case':<11} {'ratio':>6} {'target':>7}  {'':4} {'paired':>7} {'cpu-time':>8} {'vs sparse HF':>12}  what")
    for r in results:
        ok = "ok" if r["ratio"] >= r["target"] else "MISS"
        vs = f"{r['ratio_vs_sparse']:.2f}x" if "ratio_vs_sparse" in r else "-"
        print(f"{r['case']:<11} {r['ratio']:>5.2f}x {r['target']:>6.1f}x  {ok:<4} {r['paired_ratio']:>6.2f}x "
              f"{r['ratio_cpu_time']:>7.2f}x {vs:>12}  {r['what']}")
    print("ratio: ours / the faster transformers attention (medians of wall-clock tokens/s); paired: median "
          "of per-step ratios (same batch, back to back); cpu-time: tokens per CPU-second of this process")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--quick", action="store_true", help="fewer steps (1 warm-up, 2 timed)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 3, quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps per model (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--preset", default="ettin-17m", help="model shape (default ettin-17m)")
    parser.add_argument("--min-len", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-all", action="store_true",
                        help="time every transformers implementation on every step (slower); by default "
                             "the slower of sdpa/eager is dropped after the first timed step")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.quick else 3)
    args.warmup = 1 if args.warmup is None else args.warmup
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")

    import transformers

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "preset": args.preset, "steps": args.steps, "warmup": args.warmup,
    }
    print(f"machine: {machine}", flush=True)
    results = []
    start = time.perf_counter()
    for name in names:
        case = CASES[name]
        cfg = preset(args.preset, causal=case.kind == "clm")
        results.append(run_case(case, args, cfg, device))
    print_table(results)
    print(f"\n(total {time.perf_counter() - start:.0f} s; median of {args.steps} timed steps after "
          f"{args.warmup} warm-up; models interleaved step by step)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": machine, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
