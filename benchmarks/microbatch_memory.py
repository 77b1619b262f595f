"""Is the micro-batch memory estimate (twofold.train.microbatch.activation_bytes) an upper bound
of what one forward + backward really takes on CPU, and by how much?

Each case runs in a fresh process: a model of the preset's shape (ettin vocabulary, dropout
0.1 on the attention output as in the recipe) takes a tiny warm-up step, then one packed
micro-batch of random tokens (MLM: 30% predicted; CLM: all) in the trainer's form (the
labelled rows as `target_index`); the growth of the peak resident memory (ru_maxrss) over the
warm-up's is the measured activation memory.

    PYTHONPATH=src python benchmarks/microbatch_memory.py            # the cases below, ~3 minutes
    PYTHONPATH=src python benchmarks/microbatch_memory.py --case ettin-17m clm 4 1024 fp32
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys

CASES = [("ettin-17m", "mlm", 4, 1024, "fp32"), ("ettin-17m", "clm", 4, 1024, "fp32"),
         ("ettin-17m", "mlm", 1, 7999, "fp32"), ("ettin-17m", "mlm", 4, 1024, "bf16"),
         ("ettin-17m", "clm", 4, 1024, "bf16"), ("ettin-68m", "mlm", 2, 1024, "fp32"),
         ("ettin-68m", "clm", 2, 1024, "fp32"), ("ettin-68m", "mlm", 2, 1024, "bf16")]


def measure(name: str, objective: str, sequences: int, seq_len: int, precision: str) -> tuple[int, int]:
    """(measured, estimated) bytes of one micro-batch's forward + backward."""
    import contextlib

    import torch

    from twofold.model import TwofoldModel, preset
    from twofold.train.microbatch import activation_bytes

    torch.set_num_threads(1)
    config = preset(name, causal=objective == "clm", attention_output_dropout=0.1)
    model = TwofoldModel(config).train()
    tokens = sequences * seq_len
    ids = torch.randint(5, config.vocab_size - 100, (tokens,))
    labels = ids.clone()
    share = 1.0 if objective == "clm" else 0.3
    if objective == "mlm":
        labels[torch.rand(tokens) > share] = -100
    positions = torch.arange(seq_len).repeat(sequences)
    bf16 = precision == "bf16"
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step(n: int, width: int) -> None:  # the trainer's form: the labelled rows as target_index
        cu = torch.arange(0, n * width + 1, width, dtype=torch.int32)
        index = torch.nonzero(labels[: n * width] != -100).flatten()
        with cast:
            out = model(ids[: n * width], labels=labels[index], cu_seqlens=cu, max_seqlen=width,
                        position_ids=positions[: n * width] % width, target_index=index)
        out.loss.backward()

    step(1, 64)  # gradients, kernels and allocator pools exist before the measurement
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step(sequences, seq_len)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return peak - base, activation_bytes(config, sequences, seq_len, share, bf16)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", nargs=5, metavar=("PRESET", "OBJECTIVE", "SEQUENCES", "SEQ_LEN", "PRECISION"))
    args = parser.parse_args()
    if args.case:
        name, objective, sequences, seq_len, precision = args.case
        measured, estimated = measure(name, objective, int(sequences), int(seq_len), precision)
        print(measured, estimated)
        return 0
    print(f"{'case':34} {'measured MiB':>12} {'estimate MiB':>12} {'estimate/measured':>17}")
    worst = float("inf")
    for case in CASES:
        result = subprocess.run([sys.executable, __file__, "--case", *map(str, case)], capture_output=True, text=True,
                                check=True)
        measured, estimated = map(int, result.stdout.split())
        worst = min(worst, estimated / measured)
        label = " ".join(map(str, case))
        print(f"{label:34} {measured / 2**20:12.0f} {estimated / 2**20:12.0f} {estimated / measured:17.2f}")
    print(f"smallest estimate/measured: {worst:.2f} ({'an upper bound' if worst >= 1 else 'UNDER the measurement'})")
    return 0 if worst >= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
