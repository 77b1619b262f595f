#!/usr/bin/env python
"""The checks of `benchmarks/gpu_check.sh` that need Python: model parity and exact resume.

    python benchmarks/gpu_check.py parity --device cuda
    python benchmarks/gpu_check.py resume --device cuda --store STORE --out DIR
    python benchmarks/gpu_check.py parity --smoke            # CPU, tiny: proves the script runs

parity: ours against transformers' ModernBERT (encoder and decoder, SDPA, padded batches):
  - fp32 (TF32 off): max |logits difference| <= 1e-5;
  - bf16 autocast: our error against the fp32 logits must stay within transformers' own bf16
    error: mean |ours_bf16 − fp32| <= 1.5 · mean |theirs_bf16 − fp32| + 1e-3 · mean |fp32|;
  - flash-attn varlen against our SDPA kernel on packed bf16 q/k/v (global and sliding-window
    layers, encoder and decoder): max |difference| <= 2e-2, when flash-attn is installed.
resume: a run with dropout SIGKILLed in the middle of a phase and resumed against two
  uninterrupted runs. If the two uninterrupted runs agree bit for bit (deterministic kernels),
  the resumed one must too; otherwise each step's loss must agree within twice the spread of
  the two uninterrupted runs (and 1e-3 relative), the final weights likewise.
Exit status 0 when every check passes, 1 otherwise; one line per check.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

FP32_TOL = 1e-5
BF16_FACTOR, BF16_FLOOR = 1.5, 1e-3
FLASH_TOL = 2e-2


def report(ok: bool, what: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {what}", flush=True)
    return ok


# ---------------------------------------------------------------- parity


def twins(causal: bool, device: torch.device, smoke: bool, tmp: Path):
    """Our model and transformers' loaded from our export: the same weights, both in fp32."""
    import transformers

    import twofold
    from twofold.model import TwofoldModel, preset

    shape = dict(local_attention=16, global_attn_every_n_layers=3, num_hidden_layers=4) if smoke else \
        dict(vocab_size=50368)
    torch.manual_seed(0)
    ours = TwofoldModel(preset("tiny" if smoke else "ettin-17m", causal=causal, **shape)).eval()
    folder = tmp / ("decoder" if causal else "encoder")
    twofold.save(ours, folder)
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModelForMaskedLM
    theirs = auto.from_pretrained(folder, attn_implementation="sdpa").eval()
    return ours.to(device), theirs.to(device)


def parity(args) -> bool:
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for causal in (False, True):
            member = "decoder" if causal else "encoder"
            ours, theirs = twins(causal, device, args.smoke, Path(tmp))
            lengths = [40, 64, 17] if args.smoke else [1024, 700, 333, 1024]
            torch.manual_seed(1)
            ids = torch.randint(5, ours.config.vocab_size, (len(lengths), max(lengths)), device=device)
            mask = (torch.arange(max(lengths), device=device)[None] < torch.tensor(lengths, device=device)[:, None])
            with torch.no_grad():
                reference = theirs(input_ids=ids, attention_mask=mask.long()).logits[mask].float()
                fp32 = ours(ids, attention_mask=mask).logits[mask].float()
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    ours_bf16 = ours(ids, attention_mask=mask).logits[mask].float()
                    theirs_bf16 = theirs(input_ids=ids, attention_mask=mask.long()).logits[mask].float()
            diff = (fp32 - reference).abs().max().item()
            ok &= report(diff <= FP32_TOL, f"parity fp32 {member}: max |ours - transformers| = {diff:.2e} "
                                           f"(<= {FP32_TOL:g})")
            ours_err = (ours_bf16 - reference).abs().mean().item()
            theirs_err = (theirs_bf16 - reference).abs().mean().item()
            bound = BF16_FACTOR * theirs_err + BF16_FLOOR * reference.abs().mean().item()
            ok &= report(ours_err <= bound, f"parity bf16 {member}: mean error vs fp32 ours {ours_err:.2e}, "
                                            f"transformers {theirs_err:.2e} (ours <= {bound:.2e})")
    ok &= flash_against_sdpa(device)
    return ok


def flash_against_sdpa(device: torch.device) -> bool:
    if importlib.util.find_spec("flash_attn") is None or device.type != "cuda":
        why = "not installed" if importlib.util.find_spec("flash_attn") is None else "needs CUDA"
        print(f"SKIP  flash-attn varlen vs SDPA: flash-attn {why}; the SDPA kernels ran everywhere", flush=True)
        return True
    from twofold.model.attention import PackedLayout, packed_attention

    ok = True
    torch.manual_seed(2)
    lengths = [1024, 513, 77, 2048, 1]
    cu = torch.nn.functional.pad(torch.tensor(lengths).cumsum(0), (1, 0)).to(torch.int32).to(device)
    n, heads, dim = sum(lengths), 12, 64
    q, k, v = (torch.randn(n, heads, dim, device=device, dtype=torch.bfloat16) for _ in range(3))
    for causal in (False, True):
        layout = PackedLayout.build(cu, max(lengths), n, causal, 64)
        for local in (False, True):
            flash = packed_attention(q, k, v, layout, local, kernel="flash").float()
            sdpa = packed_attention(q, k, v, layout, local, kernel="buckets").float()
            diff = (flash - sdpa).abs().max().item()
            what = f"{'decoder' if causal else 'encoder'} {'sliding-window' if local else 'global'}"
            ok &= report(diff <= FLASH_TOL, f"flash-attn varlen vs SDPA, {what}: max |diff| = {diff:.2e} "
                                            f"(<= {FLASH_TOL:g})")
    return ok


# ---------------------------------------------------------------- resume

RECIPE = """\
model: {model}
seed: 21
optimizer: {{name: stable_adamw, lr: 3.0e-3, betas: [0.9, 0.98], eps: 1.0e-6, weight_decay: 3.0e-4}}
dropout: {{attention_output: 0.1}}
phase:
  pretrain: {{tokens: {pretrain}, seq_len: {seq}, lr_warmup_tokens: {warmup}, batch_sequences: {batch},
             checkpoint_every_tokens: {pretrain}, tag: step}}
  decay: {{tokens: {decay}, seq_len: {long}, mask_rate: 0.15, lr_decay: one_minus_sqrt, lr_start_ratio: 0.5,
          lr_min_ratio: 0.02, batch_sequences: {batch}, rope_theta_global: 160000,
          checkpoint_every_tokens: {decay}, tag: decay}}
"""


def losses(run: Path) -> list[float]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["loss"] for line in path.read_text().splitlines() if '"loss"' in line]


def final_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    from twofold.train import checkpoint

    last = [p for p in checkpoint.list_checkpoints(run / "checkpoints") if checkpoint.tag_of(p)][-1]
    return load_file(str(last / "model.safetensors"))


def resume(args) -> bool:
    from twofold.train import checkpoint

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seq, batch, steps = (64, 2, 12) if args.smoke else (1024, 32, 30)
    values = dict(model="tiny" if args.smoke else "ettin-17m", seq=seq, long=4 * seq, batch=batch,
                  pretrain=steps * batch * seq, warmup=batch * seq * 2, decay=4 * batch * 4 * seq)
    recipe = out / "resume-recipe.yaml"
    recipe.write_text(RECIPE.format(**values))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, "-m", "twofold", "train", "--recipe", str(recipe), "--store", args.store,
            "--objective", "mlm", "--no-progress", "--precision", args.precision, "--device", args.device,
            "--save-every-steps", "4"]

    def train(name: str) -> Path:
        result = subprocess.run([*base, "--out", str(out / name)], env=env, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"FAIL  training run {name}: {result.stderr[-2000:]}")
        return out / name

    first, second = train("uninterrupted-1"), train("uninterrupted-2")
    killed = out / "killed"
    process = subprocess.Popen([*base, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (len(losses(killed)) >= steps // 2 and checkpoint.list_checkpoints(killed / "checkpoints")):
        if process.poll() is not None or time.time() > deadline:
            return report(False, f"resume: the run to kill ended or stalled first ({process.stderr.read()[-500:]})")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    unfinished = len(losses(killed)) < len(losses(first))
    result = subprocess.run([*base[:3], "train", "--resume", str(killed), "--no-progress", "--device", args.device],
                            env=env, capture_output=True, text=True)
    if result.returncode:
        return report(False, f"resume: --resume failed: {result.stderr[-2000:]}")

    a, b, c = losses(first), losses(second), losses(killed)
    wa, wb, wc = final_weights(first), final_weights(second), final_weights(killed)
    deterministic = a == b and all(torch.equal(wa[k], wb[k]) for k in wa)
    if deterministic:
        exact = a == c and all(torch.equal(wa[k], wc[k]) for k in wa)
        return report(unfinished and exact, f"resume after SIGKILL ({args.precision}, dropout 0.1): two uninterrupted "
                                             f"runs agree bit for bit, the resumed one {'too' if exact else 'DIFFERS'}")
    spread = max(abs(x - y) for x, y in zip(a, b))
    worst = max(abs(x - z) / max(2 * spread, 1e-3 * abs(x)) for x, z in zip(a, c))
    weight_spread = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)
    weight_diff = max((wa[k].float() - wc[k].float()).abs().max().item() for k in wa)
    ok = len(a) == len(c) and worst <= 1 and weight_diff <= max(2 * weight_spread, 1e-6)
    return report(unfinished and ok, f"resume after SIGKILL ({args.precision}, dropout 0.1): kernels not "
                                     f"deterministic (loss spread {spread:.2e}, weights {weight_spread:.2e}); "
                                     f"resumed vs uninterrupted: worst loss ratio to tolerance {worst:.2f}, "
                                     f"weights {weight_diff:.2e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("check", choices=["parity", "resume"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (CPU is fine): proves the script runs")
    parser.add_argument("--store", help="resume: token store to train on")
    parser.add_argument("--out", help="resume: directory for the runs")
    parser.add_argument("--precision", default=None, help="resume: fp32 or bf16 (default: bf16 on CUDA)")
    args = parser.parse_args()
    args.precision = args.precision or ("bf16" if args.device.startswith("cuda") else "fp32")
    if args.check == "resume" and not (args.store and args.out):
        parser.error("resume needs --store and --out")
    ok = parity(args) if args.check == "parity" else resume(args)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
