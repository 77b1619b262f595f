#!/usr/bin/env bash
# twofold on one GPU within a device window: one driver, one deadline, results as they come.
#
#   benchmarks/gpu_check.sh --prepare          # on the CPU, before: the token store (benchmarks/.gpu-store)
#   benchmarks/gpu_check.sh [OUT]              # on the GPU machine: everything within 540 s
#   benchmarks/gpu_check.sh --smoke [OUT]      # tiny shapes on the CPU: proves the script runs
#
# The parts, in order of value, are benchmarks/gpu_check.py's; each appends one JSON line to
# OUT/results.jsonl when it ends, so a cut-off run still leaves what it measured. Nothing is
# fetched on the GPU machine (it has no network): the store is built here and carried with the
# working tree (the device tool's `carry`), and PyTorch's own varlen_attn needs no install.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
STORE=${GPU_CHECK_STORE:-benchmarks/.gpu-store}
DEADLINE=${GPU_CHECK_DEADLINE:-540}

if [[ "${1:-}" == "--prepare" ]]; then
    source="path=stdlib,packages=json+email+asyncio+collections+logging+unittest"
    "$PY" -m twofold data tokenizer train --source "$source" --vocab-size 8192 --out "$STORE/tokenizer" &&
    exec "$PY" -m twofold data prepare --source "$source" --tokenizer "$STORE/tokenizer" --out "$STORE/store"
fi
SMOKE=()
if [[ "${1:-}" == "--smoke" ]]; then SMOKE=(--smoke); shift; fi
OUT=${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}
if [[ ! -f "$STORE/store/manifest.json" ]]; then
    echo "no token store at $STORE/store: run benchmarks/gpu_check.sh --prepare first (on the CPU)" >&2
    exit 2
fi
# The driver stops starting parts at its deadline; the timeout only guards against a hung part.
timeout $((DEADLINE + 60)) "$PY" benchmarks/gpu_check.py --store "$STORE/store" --out "$OUT" \
    --deadline "$DEADLINE" "${SMOKE[@]}"
