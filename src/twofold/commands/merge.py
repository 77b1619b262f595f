"""`twofold merge`: combine checkpoints of one architecture into one (linear or TIES)."""

from __future__ import annotations

import argparse

_INPUT = ("a Hugging Face model directory, a run directory (its newest intact checkpoint), RUN@TAG "
          "(e.g. runs/mm-eng@decay10) or a checkpoint directory")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "merge", help="merge models of one architecture: linear average or TIES",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Merge models of one architecture and tokenizer into a Hugging Face directory with "
                    "merge.json (inputs and their checksums, method, parameters). Tensors are read one at a "
                    "time.\n\n  linear: the weighted average of the models (weights normalised to sum to 1)\n"
                    "  ties:   TIES-Merging (Yadav et al. 2023): task vectors against --base, trimmed to\n"
                    "          --density by magnitude, a sign elected per parameter, the agreeing entries\n"
                    "          averaged, scaled by --lambda.\n\nmmBERT: twofold merge --method ties --base "
                    "RUN@extN RUN-eng RUN-cont RUN-all --out merged")
    parser.add_argument("models", nargs="+", metavar="MODEL", help=_INPUT)
    parser.add_argument("--out", required=True, help="Hugging Face directory to create")
    parser.add_argument("--method", choices=["linear", "ties"], default="ties")
    parser.add_argument("--base", metavar="MODEL", help="TIES: the model the task vectors are taken against")
    parser.add_argument("--weights", type=_floats, help="per-model weights, comma-separated (default: equal)")
    parser.add_argument("--density", type=_floats,
                        help="TIES: fraction of each task vector kept, in (0, 1]; one, or one per model (default 1)")
    parser.add_argument("--lambda", dest="lam", type=float, default=1.0, help="TIES: scale of the merged task vector")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from twofold.merge import MergeSettings, merge

    settings = MergeSettings.build(args.method, len(args.models), args.weights, args.density, args.lam,
                                   has_base=args.base is not None)
    out = merge(args.models, args.out, settings, base=args.base, progress=not args.no_progress)
    print(f"merged {len(args.models)} models ({settings.method}) into {out}")
    return 0


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 0.3,0.7") from None
