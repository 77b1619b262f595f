#!/usr/bin/env python
"""twofold on one GPU, in one process with one deadline: the figures that matter first.

    python benchmarks/gpu_check.py --store STORE --out OUT [--deadline 540]
    python benchmarks/gpu_check.py --smoke --store STORE --out OUT   # tiny shapes on the CPU

Parts, in order of value; each appends one JSON line to OUT/results.jsonl as soon as it ends
(a part that would not finish before the deadline is recorded as skipped):
  environment    torch, CUDA, the card and its bf16 peak, `varlen_attn`'s signature, flash-attn
  kernel_parity  the varlen kernel in bf16 against fp32 attention under the mask predicate,
                 sequences of 1…2048 tokens and one of 7,999, the four layer kinds (encoder and
                 decoder, global and sliding-window), forward and dq/dk/dv
  trainer_mlm    ettin-150m MLM at 1024, bf16, the real trainer (`runs.start`) on packed
                 documents: eager (no fixed shapes), fixed shapes eager, fixed shapes compiled
                 (the default): tokens/s and MFU after warm-up, host syncs per step
                 (`torch.cuda.set_sync_debug_mode`), peak memory, the top kernels
  model_speed    the model alone against transformers (benchmarks/gpu_model_speed.py), fixed and
                 variable lengths
  trainer_clm    the decoder's step, compiled
  hf_parity      ours against transformers' ModernBERT: fp32 to 1e-5, bf16 within their own error
  resume         ettin-17m with dropout, SIGKILLed mid-phase and resumed, against uninterrupted runs
  pair           a bf16 ettin-17m pair (`--pair`) and its Hugging Face exports, loaded by transformers
  trainer_400m   ettin-400m MLM, compiled
  microbatch     a micro-batch too large for the card (capped at 6 GiB) is halved until it runs, with
                 the losses of the explicit smaller one (benchmarks/gpu_microbatch_check.py; last, as
                 it caps this process's memory)
Targets (docs/benchmarks.md): MFU >= 0.35 for ettin-150m within 10% of the model benchmark,
>= 0.40 for ettin-400m, CLM within 10% of MLM, >= 2x transformers on variable lengths.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


# ---------------------------------------------------------------- parts


def environment(args) -> dict:
    from twofold.model.flops import peak_flops

    found = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
             "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
             "peak_bf16_tflops": (peak_flops(args.device) or 0) / 1e12 or None,
             "flash_attn": importlib.util.find_spec("flash_attn") is not None}
    try:
        from torch.nn.attention.varlen import varlen_attn

        found["varlen_attn"] = str(inspect.signature(varlen_attn))
    except ImportError as error:
        found["varlen_attn"] = f"missing: {error}"
    return found


def reference_attention(q, k, v, lengths, causal, radius):
    """fp32 attention per sequence under twofold's mask predicate (`attention.allowed`)."""
    from twofold.model.attention import allowed

    outs, start = [], 0
    for n in lengths:
        pos = torch.arange(n, device=q.device)
        ok = allowed(pos[:, None], pos[None, :], causal, radius)
        qs, ks, vs = (x[start:start + n].float().transpose(0, 1) for x in (q, k, v))
        out = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, attn_mask=ok)
        outs.append(out.transpose(0, 1).reshape(n, -1))
        start += n
    return torch.cat(outs)


def kernel_parity(args) -> dict:
    from twofold.model.attention import varlen_attention

    device = torch.device(args.device)
    if device.type != "cuda":
        return {"skipped": "varlen_attn runs on CUDA only (the CPU tests use a stand-in)"}
    dtype = torch.bfloat16
    lengths = [3, 17, 1] if args.smoke else [1, 2, 63, 64, 65, 127, 128, 129, 300, 1024, 2048, 7999]
    radius = 4 if args.smoke else 64
    heads, dim, n = 2 if args.smoke else 12, 64, sum(lengths)
    cu = torch.nn.functional.pad(torch.tensor(lengths).cumsum(0), (1, 0)).to(torch.int32).to(device)
    torch.manual_seed(0)
    results, worst = {}, 0.0
    for causal in (False, True):
        for local in (False, True):
            q, k, v = (torch.randn(n, heads, dim, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
            out = varlen_attention(q, k, v, cu, max(lengths), causal, radius, local)
            grad = torch.randn_like(out)
            got = [out, *torch.autograd.grad(out, (q, k, v), grad)]
            q32, k32, v32 = (x.detach().float().requires_grad_() for x in (q, k, v))
            ref = reference_attention(q32, k32, v32, lengths, causal, radius if local else None)
            want = [ref, *torch.autograd.grad(ref, (q32, k32, v32), grad.float())]
            name = f"{'decoder' if causal else 'encoder'}-{'local' if local else 'global'}"
            errors = {what: (g.float() - w).abs().max().item() / max(w.abs().max().item(), 1e-6)
                      for what, g, w in zip(("out", "dq", "dk", "dv"), got, want)}
            results[name] = errors
            worst = max(worst, *errors.values())
    return {"lengths": lengths, "radius": radius, "relative_max_error": results, "worst": worst,
            "pass": worst <= 2e-2}


def train_speed(args, store: str, model: str, objective: str, steps: int, batch: int, micro: int,
                compile: bool | None, fixed: bool | None, profile: bool = False) -> dict:
    """The real trainer for `steps` steps of one phase: steady-state tokens/s and MFU (flush to
    flush after the warm-up, compilation excluded), syncs per step, peak memory."""
    from twofold.train import loop, runs
    from twofold.train.distributed import World
    from twofold.train.recipe import recipe_from_dict

    seq = 64 if args.smoke else 1024
    tokens = steps * batch * seq
    recipe = recipe_from_dict({
        "name": "gpu-check", "model": model, "seed": 21,
        "optimizer": {"name": "stable_adamw", "lr": 8e-4, "weight_decay": 1e-5},
        "dropout": {"attention_output": 0.1},  # as the Ettin recipe trains
        "phase": {"pretrain": {"tokens": tokens, "seq_len": seq, "mask_rate": 0.3, "lr_warmup_tokens": tokens // 10,
                               "batch_sequences": batch, "checkpoint_every_tokens": 10 * tokens, "tag": "step"}}})
    options = loop.Options(stores=(store,), objective=objective, micro_batch_sequences=micro, progress=False,
                           precision="bf16" if args.device.startswith("cuda") else "fp32", compile=compile,
                           fixed_shapes=fixed, log_every_steps=5)
    torch._dynamo.reset()
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.set_sync_debug_mode("warn")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) if profile and cuda \
            else contextlib.nullcontext()
        with profiler:
            runs.start(Path(tmp) / "run", recipe, options, World(device=torch.device(args.device)))
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    if cuda:
        torch.cuda.set_sync_debug_mode(0)
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    steps_done = [r for r in records if "loss" in r]
    # Reads happen every 5 steps: time and FLOPs at those points, from the records.
    points = [(r["phase_tokens"], r["phase_tokens"] / r["tokens_per_s"], r["mfu"]) for r in steps_done[4::5]]
    (t0, e0, m0), (t1, e1, m1) = points[1 if len(points) > 2 else 0], points[-1]  # the first window compiles
    result = {"model": model, "objective": objective, "compile": compile, "fixed_shapes": fixed,
              "batch": batch, "micro_batch": micro, "seq_len": seq, "steps": len(steps_done),
              "tokens_per_s": round((t1 - t0) / (e1 - e0)), "first_window_s": round(e0, 1),
              "mfu": None if m1 is None else round((m1 * e1 - m0 * e0) / (e1 - e0), 4),
              "syncs_per_step": round(syncs / len(steps_done), 2), "final_loss": steps_done[-1]["loss"],
              "wall_s": round(time.perf_counter() - started, 1),
              "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}
    if profile and cuda:
        table = profiler.key_averages()
        top = sorted(table, key=lambda e: e.device_time_total, reverse=True)[:8]
        result["top_kernels"] = [(e.key[:60], round(e.device_time_total / 1e3, 1)) for e in top]
    return result


def trainer_mlm(args) -> dict:
    shape = ("tiny", 12, 8, 4) if args.smoke else ("ettin-150m", 40, 64, 32)
    runs_ = {}
    for name, compile, fixed in (("eager", False, False), ("fixed_eager", False, True),
                                 ("fixed_compiled", None, None)):
        runs_[name] = train_speed(args, args.store, *shape[:1], "mlm", *shape[1:], compile=compile, fixed=fixed,
                                  profile=name == "fixed_compiled")
    return runs_


def model_speed(args) -> dict:
    results = {}
    for variable in (False, True):
        out = Path(args.out) / f"model_speed{'_variable' if variable else ''}.json"
        command = [sys.executable, str(HERE / "gpu_model_speed.py"), "--json", str(out), "--cases", "mlm,clm"]
        command += ["--smoke"] if args.smoke else ["--preset", "ettin-150m", "--batch", "32", "--steps", "8"]
        command += ["--variable"] if variable else []
        done = subprocess.run(command, capture_output=True, text=True, timeout=max(args.deadline.left() - 5, 10))
        results["variable" if variable else "fixed"] = json.loads(out.read_text())["results"] if out.exists() \
            else done.stderr[-1500:]
    return results


def trainer_clm(args) -> dict:
    shape = ("tiny", 12, 8, 4) if args.smoke else ("ettin-150m", 40, 64, 32)
    return train_speed(args, args.store, shape[0], "clm", *shape[1:], compile=None, fixed=None)


def trainer_400m(args) -> dict:
    shape = ("tiny", 12, 8, 4) if args.smoke else ("ettin-400m", 30, 64, 16)
    return train_speed(args, args.store, shape[0], "mlm", *shape[1:], compile=None, fixed=None)


def hf_parity(args) -> dict:
    import transformers

    import twofold
    from twofold.model import TwofoldModel, preset

    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for causal in (False, True):
            member = "decoder" if causal else "encoder"
            shape = dict(local_attention=16, num_hidden_layers=4) if args.smoke else dict(vocab_size=50368)
            torch.manual_seed(0)
            ours = TwofoldModel(preset("tiny" if args.smoke else "ettin-17m", causal=causal, **shape)).eval()
            twofold.save(ours, Path(tmp) / member)
            auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModelForMaskedLM
            theirs = auto.from_pretrained(Path(tmp) / member, attn_implementation="sdpa").eval().to(device)
            ours = ours.to(device)
            lengths = [40, 64, 17] if args.smoke else [1024, 700, 333, 1024]
            ids = torch.randint(5, ours.config.vocab_size, (len(lengths), max(lengths)), device=device)
            mask = torch.arange(max(lengths), device=device)[None] < torch.tensor(lengths, device=device)[:, None]
            with torch.no_grad():
                reference = theirs(input_ids=ids, attention_mask=mask.long()).logits[mask].float()
                fp32 = ours(ids, attention_mask=mask).logits[mask].float()
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    ours_bf16 = ours(ids, attention_mask=mask).logits[mask].float()
                    theirs_bf16 = theirs(input_ids=ids, attention_mask=mask.long()).logits[mask].float()
            ours_err = (ours_bf16 - reference).abs().mean().item()
            theirs_err = (theirs_bf16 - reference).abs().mean().item()
            fp32_diff = (fp32 - reference).abs().max().item()
            found[member] = {"fp32_max_diff": fp32_diff, "bf16_mean_error": ours_err,
                             "transformers_bf16_mean_error": theirs_err,
                             "pass": fp32_diff <= 1e-5 and ours_err <= 1.5 * theirs_err + 1e-3 * reference.abs().mean()
                             .item()}
    return found


def _train_command(args, recipe: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "twofold", "train", "--recipe", str(recipe), "--store", args.store,
            "--no-progress", "--precision", "bf16" if args.device.startswith("cuda") else "fp32",
            "--device", args.device, "--out", str(out), *extra]


RESUME_RECIPE = """\
model: {model}
seed: 21
optimizer: {{name: stable_adamw, lr: 3.0e-3, betas: [0.9, 0.98], eps: 1.0e-6, weight_decay: 3.0e-4}}
dropout: {{attention_output: 0.1}}
phase:
  pretrain: {{tokens: {tokens}, seq_len: {seq}, lr_warmup_tokens: {warmup}, batch_sequences: {batch},
             checkpoint_every_tokens: {tokens}, tag: step}}
"""


def _losses(run: Path) -> list[float]:
    path = run / "metrics.jsonl"
    return [json.loads(line)["loss"] for line in path.read_text().splitlines() if '"loss"' in line] \
        if path.exists() else []


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    from twofold.train import checkpoint

    last = [p for p in checkpoint.list_checkpoints(run / "checkpoints") if checkpoint.tag_of(p)][-1]
    return load_file(str(last / "model.safetensors"))


def resume(args) -> dict:
    from twofold.train import checkpoint

    out = Path(args.out) / "resume"
    out.mkdir(parents=True, exist_ok=True)
    seq, batch, steps = (64, 2, 12) if args.smoke else (1024, 32, 24)
    recipe = out / "recipe.yaml"
    recipe.write_text(RESUME_RECIPE.format(model="tiny" if args.smoke else "ettin-17m", seq=seq, batch=batch,
                                           tokens=steps * batch * seq, warmup=2 * batch * seq))
    extra = ("--objective", "mlm", "--save-every-steps", "4", "--log-every", "2")
    for name in ("uninterrupted-1", "uninterrupted-2"):
        subprocess.run(_train_command(args, recipe, out / name, *extra), check=True, capture_output=True)
    killed = out / "killed"
    process = subprocess.Popen(_train_command(args, recipe, killed, *extra), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    while not (len(_losses(killed)) >= steps // 2 and checkpoint.list_checkpoints(killed / "checkpoints")):
        if process.poll() is not None:
            return {"pass": False, "why": "the run to kill ended first"}
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    interrupted_at = len(_losses(killed))
    subprocess.run([sys.executable, "-m", "twofold", "train", "--resume", str(killed), "--no-progress",
                    "--device", args.device], check=True, capture_output=True)
    a, b, c = (_losses(out / "uninterrupted-1"), _losses(out / "uninterrupted-2"), _losses(killed))
    wa, wb, wc = (_weights(out / "uninterrupted-1"), _weights(out / "uninterrupted-2"), _weights(killed))
    deterministic = a == b and all(torch.equal(wa[k], wb[k]) for k in wa)
    identical = a == c and all(torch.equal(wa[k], wc[k]) for k in wa)
    return {"killed_after_steps": interrupted_at, "of_steps": len(a), "uninterrupted_runs_bit_identical": deterministic,
            "resumed_bit_identical": identical, "pass": interrupted_at < len(a) and identical}


def pair(args) -> dict:
    import transformers

    out = Path(args.out) / "pair"
    seq, batch, steps = (64, 2, 6) if args.smoke else (1024, 32, 20)
    recipe = out.parent / "pair-recipe.yaml"
    recipe.write_text(RESUME_RECIPE.format(model="tiny" if args.smoke else "ettin-17m", seq=seq, batch=batch,
                                           tokens=steps * batch * seq, warmup=2 * batch * seq))
    subprocess.run(_train_command(args, recipe, out, "--pair"), check=True, capture_output=True)
    found = {}
    autos = {"encoder": transformers.AutoModelForMaskedLM, "decoder": transformers.AutoModelForCausalLM}
    for member, auto in autos.items():
        export = out.parent / f"pair-hf-{member}"
        subprocess.run([sys.executable, "-m", "twofold", "export", str(out), "--member", member, "--out", str(export)],
                       check=True, capture_output=True)
        auto.from_pretrained(export)
        found[member] = {"steps": len(_losses(out / member)), "final_loss": _losses(out / member)[-1]}
    hashes = [[json.loads(line)["hash"] for line in (out / m / "pretrain" / "data_order" / "rank0.jsonl")
               .read_text().splitlines()] for m in found]
    return {**found, "same_batches": hashes[0] == hashes[1], "pass": hashes[0] == hashes[1]}


def microbatch(args) -> dict:
    sys.path.insert(0, str(HERE))
    from gpu_microbatch_check import check

    passed, detail = check(Path(args.out) / "microbatch", smoke=args.smoke)
    return {"pass": passed, "detail": detail}


PARTS = [  # name, function, seconds it needs at least (on an H100)
    ("environment", environment, 1),
    ("kernel_parity", kernel_parity, 20),
    ("trainer_mlm", trainer_mlm, 150),
    ("model_speed", model_speed, 60),
    ("trainer_clm", trainer_clm, 45),
    ("hf_parity", hf_parity, 30),
    ("resume", resume, 90),
    ("pair", pair, 60),
    ("trainer_400m", trainer_400m, 60),
    ("microbatch", microbatch, 60),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--store", required=True, help="token store to train on (built beforehand, on a CPU)")
    parser.add_argument("--out", required=True, help="folder for results.jsonl and the runs")
    parser.add_argument("--deadline", type=float, default=540, help="seconds for everything (default 540)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", help="comma-separated part names")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (CPU is fine): proves the script runs")
    args = parser.parse_args()
    args.deadline = Deadline(args.deadline)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = Path(args.out) / "results.jsonl"
    chosen = set(args.only.split(",")) if args.only else None
    failed = 0
    for name, part, needs in PARTS:
        if chosen and name not in chosen:
            continue
        record = {"part": name}
        if not args.smoke and args.deadline.left() < needs:
            record["skipped"] = f"{args.deadline.left():.0f} s left, needs about {needs} s"
        else:
            started = time.perf_counter()
            try:
                record["result"] = part(args)
            except Exception as error:  # a part's failure is a result; the next part still runs
                record["error"] = "".join(traceback.format_exception_only(error)).strip()[-2000:]
                failed += 1
            record["seconds"] = round(time.perf_counter() - started, 1)
        with results.open("a") as file:
            file.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
