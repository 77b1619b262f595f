#!/usr/bin/env python
"""Which kernel computes packed (unpadded) attention fastest on CPU? Forward + backward.

Attention alone (no projections), fp32, ettin-17m heads (4 x 64), window radius 64
(local_attention 128), on packed q/k/v [N, heads, head_dim] with `cu_seqlens`:

  padded     one re-padded grid [S, H, longest, D] + SDPA (twofold's first kernel)
  buckets    sequences sorted by length into a few re-padded buckets + SDPA (twofold, global)
  band       packed stream cut into blocks, each attends its neighbour blocks (twofold, local)
  auto       what twofold picks (cost model: band or buckets)
  blockdiag  one SDPA over the whole concatenation with a block-diagonal [N, N] mask
  loop       a Python loop over sequences, one SDPA per sequence
  flex       FlexAttention with a block mask, torch.compile'd (compile time reported apart)

Workloads: var16 (16 sequences, lengths U[32,512]), short64 (64 sequences, U[16,64]),
fixed8 (8 x 512). Every kernel is checked against `loop` before it is timed.

    python benchmarks/attention_kernels.py            # ~3 min on 2 cores
    python benchmarks/attention_kernels.py --no-flex --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial

import torch
import torch.nn.functional as F

from twofold.model.attention import PackedLayout, allowed, packed_attention

COLUMNS = ["padded", "buckets", "band", "auto", "blockdiag", "loop", "flex"]
WORKLOADS = {"var16": (16, 32, 512), "short64": (64, 16, 64), "fixed8": (8, 512, 512)}


def lengths_for(name: str, seed: int) -> list[int]:
    count, low, high = WORKLOADS[name]
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(low, high + 1, (count,), generator=gen).tolist()


def library_kernel(q, k, v, layout: PackedLayout, local: bool, kernel: str | None):
    return packed_attention(q, k, v, layout, local, kernel=kernel)


def loop_kernel(q, k, v, layout: PackedLayout, local: bool):
    cu = layout.cu_seqlens.tolist()
    outs = []
    for a, b in zip(cu[:-1], cu[1:]):
        qs, ks, vs = (x[a:b].transpose(0, 1) for x in (q, k, v))
        mask = None
        if local and layout.window_binds(b - a):
            pos = torch.arange(b - a)
            mask = allowed(pos[:, None], pos[None, :], layout.causal, layout.radius)
        out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, is_causal=layout.causal and mask is None)
        outs.append(out.transpose(0, 1).reshape(b - a, -1))
    return torch.cat(outs)


def blockdiag_mask(layout: PackedLayout, local: bool) -> torch.Tensor:
    n = layout.num_tokens
    seq = torch.repeat_interleave(torch.arange(layout.num_sequences), layout.cu_seqlens.long().diff())
    idx = torch.arange(n)
    return (seq[:, None] == seq[None, :]) & allowed(idx[:, None], idx[None, :], layout.causal,
                                                     layout.radius if local else None)


def blockdiag_kernel(q, k, v, layout, local, mask):
    out = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None],
                                         v.transpose(0, 1)[None], attn_mask=mask)
    return out[0].transpose(0, 1).reshape(q.shape[0], -1)


class Flex:
    """torch.compile'd FlexAttention over the packed stream as one [1, H, N, D] sequence."""

    def __init__(self):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        self.create_block_mask = create_block_mask
        self.attn = torch.compile(flex_attention, dynamic=False)

    def block_mask(self, layout: PackedLayout, local: bool):
        seq = torch.repeat_interleave(torch.arange(layout.num_sequences), layout.cu_seqlens.long().diff())
        causal, radius = layout.causal, layout.radius if local else None

        def mask_mod(b, h, qi, ki):
            return (seq[qi] == seq[ki]) & allowed(qi, ki, causal, radius)

        n = layout.num_tokens
        return self.create_block_mask(mask_mod, None, None, n, n, device="cpu")

    def __call__(self, q, k, v, layout, local, block_mask):
        out = self.attn(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                        block_mask=block_mask)
        return out[0].transpose(0, 1).reshape(q.shape[0], -1)


def fwd_bwd_seconds(fn, q, k, v) -> float:
    qq, kk, vv = (x.detach().requires_grad_() for x in (q, k, v))
    t0 = time.perf_counter()
    out = fn(qq, kk, vv)
    out.backward(torch.ones_like(out))
    return time.perf_counter() - t0


def time_round_robin(kernels: dict, q, k, v, reps: int) -> dict[str, float]:
    """Median ms of forward + backward per kernel; kernels take turns so load drifts hit all."""
    for fn in kernels.values():
        fwd_bwd_seconds(fn, q, k, v)  # warm-up
    times = {name: [] for name in kernels}
    for _ in range(reps):
        for name, fn in kernels.items():
            times[name].append(fwd_bwd_seconds(fn, q, k, v))
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {', '.join(WORKLOADS)}")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions (median; default 7)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--radius", type=int, default=64, help="local_attention // 2 (default 64)")
    parser.add_argument("--no-flex", action="store_true", help="skip FlexAttention (its compile takes minutes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    flex = None
    if not args.no_flex:
        try:
            flex = Flex()
        except Exception as error:  # noqa: BLE001 - report and go on without it
            print(f"flex: unavailable ({type(error).__name__}: {error})")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, heads {args.heads} x {args.head_dim}, "
          f"radius {args.radius}; ms for forward + backward, median of {args.reps}")
    header = f"{'workload':<8} {'tokens':>6} {'layer':<15} " + " ".join(f"{k:>9}" for k in COLUMNS)
    print(header)
    notes = []
    for workload in args.workloads.split(","):
        lengths = lengths_for(workload, args.seed)
        cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)
        n = sum(lengths)
        q, k, v = (torch.randn(n, args.heads, args.head_dim) for _ in range(3))
        for causal in (False, True):
            for local in (False, True):
                layout = PackedLayout.build(cu, None, n, causal, args.radius)
                expected = loop_kernel(q, k, v, layout, local)
                lib = partial(library_kernel, layout=layout, local=local)
                kernels = {
                    "padded": partial(lib, kernel="padded"),
                    "buckets": partial(lib, kernel="buckets"),
                    "band": partial(lib, kernel="band") if local else None,
                    "auto": partial(lib, kernel=None),
                    "blockdiag": partial(blockdiag_kernel, layout=layout, local=local,
                                         mask=blockdiag_mask(layout, local)),
                    "loop": partial(loop_kernel, layout=layout, local=local),
                }
                if flex is not None:
                    try:
                        t0 = time.perf_counter()
                        kernels["flex"] = partial(flex, layout=layout, local=local,
                                                  block_mask=flex.block_mask(layout, local))
                        qq, kk, vv = (x.detach().requires_grad_() for x in (q, k, v))
                        kernels["flex"](qq, kk, vv).sum().backward()
                        notes.append(f"flex first call (compile + block mask) {workload} "
                                     f"{'decoder' if causal else 'encoder'} {'local' if local else 'global'}: "
                                     f"{time.perf_counter() - t0:.1f} s")
                    except Exception as error:  # noqa: BLE001
                        notes.append(f"flex failed: {type(error).__name__}: {str(error)[:200]}")
                        kernels["flex"] = None
                timed = {}
                for name, fn in kernels.items():
                    if fn is None:
                        continue
                    err = (fn(q, k, v) - expected).abs().max().item()
                    if err > 1e-4:
                        raise SystemExit(f"{name} disagrees with loop on {workload}: max abs diff {err}")
                    timed[name] = fn
                ms = time_round_robin(timed, q, k, v, args.reps)
                cells = [f"{ms[name]:>9.1f}" if name in ms else f"{'-':>9}" for name in COLUMNS]
                kind = f"{'dec' if causal else 'enc'}-{'local' if local else 'global'}"
                print(f"{workload:<8} {n:>6} {kind:<15} " + " ".join(cells), flush=True)

    # Calibration of the cost model: one SDPA call's fixed cost, in (query, key) pairs.
    small = [torch.randn(1, args.heads, 8, args.head_dim) for _ in range(3)]
    big = [torch.randn(8, args.heads, 512, args.head_dim) for _ in range(3)]
    sdpa = lambda a, b, c: F.scaled_dot_product_attention(a, b, c)
    t_small = time_round_robin({"small": sdpa}, *small, max(args.reps, 20))["small"]
    t_big = time_round_robin({"big": sdpa}, *big, args.reps)["big"]
    per_pair = t_big / (8 * 512 * 512)
    print(f"\ncalibration: SDPA fwd+bwd call on 8 tokens {t_small:.3f} ms; {1e6 * per_pair:.3f} ns per "
          f"(query, key) pair at 8 x 512 -> one call ~ {t_small / per_pair:,.0f} pairs "
          f"(twofold.model.attention.CALL_COST_PAIRS)")
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
