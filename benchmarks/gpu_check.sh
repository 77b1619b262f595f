#!/usr/bin/env bash
# GPU readiness of twofold, in one go (about 8 minutes on one H100; budget 10):
#   1. the environment, and flash-attn if a wheel installs from the package index (else the
#      SDPA paths run, and the summary says so);
#   2. model parity on the device: fp32 to 1e-5, bf16 within transformers' own bf16 error,
#      flash-attn varlen against SDPA (benchmarks/gpu_check.py parity);
#   3. a 50-step ettin-17m pair (30 pretraining steps at 1024, then 10 extension and 10 decay
#      steps at 7999, with the recipe's θ and dropout), --precision bf16, and its HF exports;
#   4. SIGKILL + resume with dropout on the device against two uninterrupted runs
#      (benchmarks/gpu_check.py resume);
#   5. benchmarks/gpu_model_speed.py and benchmarks/gpu_train.py (tokens/s and MFU).
#
#   benchmarks/gpu_check.sh [OUT_DIR]          # on a CUDA machine, from anywhere in the repository
#   benchmarks/gpu_check.sh --smoke [OUT_DIR]  # tiny shapes on the CPU: proves the script runs
#
# Each step has a time limit and writes OUT_DIR/<step>.log; OUT_DIR/summary.txt collects every
# result line. The exit status is the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
SELF="$PWD/benchmarks/gpu_check.sh"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python}

# ---------------------------------------------------------------- the steps that run as a unit

prepare_data() {
    local source="path=stdlib,packages=json+email+asyncio+collections"
    "$PY" -m twofold data tokenizer train --source "$source" --vocab-size 8192 --out "$OUT/data/tokenizer" &&
    "$PY" -m twofold data prepare --source "$source" --tokenizer "$OUT/data/tokenizer" --out "$OUT/data/store"
}

train_pair() {
    local shape steps
    if [[ $SMOKE -eq 1 ]]; then  # the tiny model: 8 + 2 + 2 steps
        shape=(model=tiny phase.pretrain.tokens=2048 phase.pretrain.seq_len=64 phase.pretrain.batch_sequences=4
               phase.pretrain.lr_warmup_tokens=512 phase.extension.tokens=1024 phase.extension.seq_len=256
               phase.extension.batch_sequences=2 phase.decay.tokens=1024 phase.decay.seq_len=256
               phase.decay.batch_sequences=2)
        steps=12
    else  # ettin-17m: 30 steps of 32 x 1024, then 10 + 10 steps of 4 x 7999
        shape=(phase.pretrain.tokens=983040 phase.pretrain.batch_sequences=32 phase.pretrain.lr_warmup_tokens=98304
               phase.extension.tokens=319960 phase.extension.batch_sequences=4
               phase.decay.tokens=319960 phase.decay.batch_sequences=4)
        steps=50
    fi
    local sets=()
    for value in "${shape[@]}" phase.pretrain.checkpoint_every_tokens=1T phase.extension.checkpoint_every_tokens=1T \
                 phase.decay.checkpoint_every_tokens=1T; do
        sets+=(--set "$value")
    done
    "$PY" -m twofold train --recipe ettin --size 17m "${sets[@]}" --store "$OUT/data/store" --out "$OUT/pair" \
        --pair --precision "$PRECISION" --device "$DEVICE" --no-progress || return 1
    for member in encoder decoder; do
        "$PY" -m twofold export "$OUT/pair" --member $member --out "$OUT/pair-hf/$member" || return 1
    done
    "$PY" - "$OUT/pair" "$steps" <<'EOF'
import json, sys
from pathlib import Path
failed = 0
for member in ("encoder", "decoder"):
    lines = [json.loads(line) for line in (Path(sys.argv[1]) / member / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "loss" in line]
    phases = dict.fromkeys(line["phase"] for line in steps)
    speed = {p: round(max(line["tokens_per_s"] for line in steps if line["phase"] == p)) for p in phases}
    ok = len(steps) == int(sys.argv[2]) and steps[-1]["loss"] < steps[0]["loss"]
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'}  pair {member}: {len(steps)} steps, loss {steps[0]['loss']:.3f} -> "
          f"{steps[-1]['loss']:.3f}, tokens/s by phase {speed}")
sys.exit(failed)
EOF
}

if [[ "${1:-}" == "--run" ]]; then  # one step, inside its time limit (see `step`)
    "$2"
    exit $?
fi

# ---------------------------------------------------------------- driver

SMOKE=0
if [[ "${1:-}" == "--smoke" ]]; then SMOKE=1; shift; fi
OUT=${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
FAILED=0
say() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME SECONDS COMMAND…: run it within the limit, log to OUT/NAME.log, record the outcome.
step() {
    local name=$1 limit=$2 started rc took
    shift 2
    echo "== $name (limit ${limit}s)"
    started=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    took=$(( $(date +%s) - started ))
    if [[ $rc -eq 0 ]]; then
        say "PASS  $name (${took}s)"
    elif [[ $rc -eq 124 ]]; then
        say "FAIL  $name: over its ${limit}s limit"
    else
        say "FAIL  $name (exit $rc, ${took}s)"
    fi
    grep -E "^(PASS|FAIL|SKIP) " "$OUT/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
    if [[ $rc -ne 0 ]]; then
        tail -n 15 "$OUT/$name.log" | sed 's/^/      | /'
        FAILED=$((FAILED + 1))
    fi
}

if [[ $SMOKE -eq 1 ]]; then
    DEVICE=cpu PRECISION=fp32 SMOKE_FLAG=--smoke
    say "smoke mode: tiny shapes on the CPU; its speeds mean nothing"
elif "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    DEVICE=cuda PRECISION=bf16 SMOKE_FLAG=
else
    say "FAIL  torch sees no CUDA device; on a CPU machine run: benchmarks/gpu_check.sh --smoke"
    exit 1
fi
export OUT SMOKE DEVICE PRECISION PY

# 1. environment and flash-attn
"$PY" - <<'EOF' | tee -a "$SUMMARY"
import platform, torch, transformers
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
print(f"env: torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
      f"python {platform.python_version()}, GPU {gpu}")
EOF
if [[ $SMOKE -eq 0 ]] && ! "$PY" -c "import flash_attn" 2> /dev/null; then
    # Wheels only: building flash-attn from source takes far longer than this whole check.
    timeout 120 "$PY" -m pip install --retries 0 --timeout 10 --only-binary=:all: flash-attn > "$OUT/flash-attn-install.log" 2>&1
fi
if "$PY" -c "import flash_attn" 2> /dev/null; then
    say "flash-attn $("$PY" -c 'import flash_attn; print(flash_attn.__version__)'): packed attention uses its varlen kernel"
else
    say "flash-attn: not installed (no wheel from the package index for this machine); the SDPA paths run"
fi

# 2-5
step parity 150 "$PY" benchmarks/gpu_check.py parity --device "$DEVICE" $SMOKE_FLAG
step data 150 "$SELF" --run prepare_data
step pair 240 "$SELF" --run train_pair
step resume 240 "$PY" benchmarks/gpu_check.py resume --device "$DEVICE" --store "$OUT/data/store" \
    --out "$OUT/resume" $SMOKE_FLAG
step model_speed 150 "$PY" benchmarks/gpu_model_speed.py --steps 8 --json "$OUT/gpu_model_speed.json" $SMOKE_FLAG
step train_speed 150 "$PY" benchmarks/gpu_train.py --store "$OUT/data/store" --json "$OUT/gpu_train.json" $SMOKE_FLAG
"$PY" - "$OUT" <<'EOF' | tee -a "$SUMMARY"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
if (out / "gpu_model_speed.json").is_file():
    for r in json.loads((out / "gpu_model_speed.json").read_text())["results"]:
        value = f"ratio {r['ratio']:.2f}" if "ratio" in r else f"{r['tokens_per_s']:,.0f} tokens/s, MFU {r['mfu']}"
        print(f"gpu_model_speed {r['case']} {r['model']}: {value}")
if (out / "gpu_train.json").is_file():
    r = json.loads((out / "gpu_train.json").read_text())
    print(f"gpu_train {r['model']} {r['objective']} on {r['device']}: {r['tokens_per_s']:,} tokens/s, "
          f"MFU {r['mfu']}, peak memory {r['max_memory_gib']} GiB")
EOF

say "failed steps: $FAILED (logs: $OUT/*.log)"
exit "$FAILED"
