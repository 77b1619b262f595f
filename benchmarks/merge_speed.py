"""`twofold merge` on ettin-150m-shaped checkpoints: seconds and peak memory, streamed vs in memory.

Writes a base and two models of the ettin-150m encoder shape (vocab 50,368, fp32, ~600 MB each)
as Hugging Face directories, then runs in fresh processes, each measured alone (wall seconds
and peak RSS from getrusage):
  - `twofold merge --method ties` (base + 2 models) and `--method linear` (2 models): streamed;
  - the reference: every model loaded whole with `twofold.load`, TIES computed on the full
    state dicts with the same `twofold.merge.ties`, saved with `twofold.save`.
Prints each and the ratios (reference / streamed).

    python benchmarks/merge_speed.py [--work /tmp/merge-bench] [--model ettin-150m]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE = """
import sys, torch
from twofold import load, save
from twofold.merge import ties
base, a, b, out = sys.argv[1:5]
states = [load(p).state_dict() for p in (base, a, b)]
model = load(base)
merged = {k: ties(states[0][k], [states[1][k], states[2][k]], [1.0, 1.0], [0.5, 0.5]) for k in states[0]}
model.load_state_dict(merged)
save(model, out)
"""

MEASURE = """
import resource, subprocess, sys, time, json
start = time.perf_counter()
code = subprocess.call(sys.argv[1:])
print(json.dumps({"rc": code, "seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def measured(command: list[str]) -> dict:
    """Wall seconds and peak RSS of `command` run in a process of its own."""
    result = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
    record = json.loads(result.stdout.strip().splitlines()[-1])
    if record["rc"]:
        raise SystemExit(f"{command} failed: {result.stderr[-2000:]}")
    return record


def make_models(work: Path, shape: str) -> list[Path]:
    import torch

    from twofold import save
    from twofold.model import TwofoldModel, preset

    paths = []
    for seed, name in enumerate(("base", "a", "b")):
        torch.manual_seed(seed)
        model = TwofoldModel(preset(shape))
        paths.append(save(model, work / name))
        del model
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="folder for the checkpoints (default: a temporary one, removed after)")
    parser.add_argument("--model", default="ettin-150m", help="model preset of the checkpoints")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="merge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        base, a, b = make_models(work, args.model)
        size = sum(f.stat().st_size for f in a.glob("*.safetensors")) / 2**20
        print(f"{args.model}: {size:.0f} MB of weights per model (written in {time.perf_counter() - start:.1f} s)")
        twofold = [sys.executable, "-m", "twofold", "merge", "--no-progress"]
        runs = {
            "ties (streamed)": measured(twofold + [str(a), str(b), "--method", "ties", "--base", str(base),
                                                   "--density", "0.5", "--out", str(work / "ties")]),
            "linear (streamed)": measured(twofold + [str(a), str(b), "--method", "linear", "--out",
                                                     str(work / "linear")]),
            "ties (all in memory)": measured([sys.executable, "-c", REFERENCE, str(base), str(a), str(b),
                                              str(work / "reference")]),
        }
        for name, record in runs.items():
            print(f"{name:<22} {record['seconds']:7.1f} s   peak RSS {record['peak_rss_mb']:7.0f} MB")
        streamed, reference = runs["ties (streamed)"], runs["ties (all in memory)"]
        print(f"reference / streamed TIES: time {reference['seconds'] / streamed['seconds']:.2f}x, "
              f"peak RSS {reference['peak_rss_mb'] / streamed['peak_rss_mb']:.2f}x")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
