"""`twofold merge`: combine checkpoints of one architecture into one (linear or TIES)."""

from __future__ import annotations

import argparse

from twofold.commands import POSITIVE, numbers_in

_INPUT = ("a Hugging Face model directory, a run directory (its newest intact checkpoint), RUN@TAG "
          "(e.g. runs/mm-eng@decay10) or a checkpoint directory")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "merge", help="merge models of one architecture: linear average or TIES",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Merge models of one architecture and tokenizer into a Hugging Face directory with "
                    "merge.json (inputs and their checksums, method, parameters). Tensors are read one at a "
                    "time.\n\n  linear: the weighted average of the models (weights normalised to sum to 1)\n"
                    "  ties:   the default, and it needs --base. TIES-Merging (Yadav et al. 2023, arXiv:2306.01708):\n"
                    "          task vectors against --base, trimmed to --density by magnitude, a sign elected\n"
                    "          per parameter, the agreeing entries averaged, scaled by --lambda.\n\n"
                    "mmBERT: twofold merge --method ties --base "
                    "RUN@extN RUN-eng RUN-cont RUN-all --out merged")
    parser.add_argument("models", nargs="+", metavar="MODEL", help=_INPUT)
    parser.add_argument("--out", required=True, help="Hugging Face directory to create")
    parser.add_argument("--method", choices=["linear", "ties"], default="ties",
                        help="ties (default; needs --base) or linear")
    parser.add_argument("--base", metavar="MODEL",
                        help="TIES (the default method) needs it: the model the task vectors are taken against")
    parser.add_argument("--weights", type=numbers_in(0, low_open=True),
                        help="per-model weights, comma-separated (default: equal)")
    parser.add_argument("--density", type=numbers_in(0, 1, low_open=True),
                        help="TIES: fraction of each task vector kept, in (0, 1]; one, or one per model (default 1)")
    parser.add_argument("--lambda", dest="lam", type=POSITIVE,
                        help="TIES: scale of the merged task vector (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from twofold.errors import TwofoldError
    from twofold.merge import MergeSettings, merge

    if len(args.models) < 2:
        raise TwofoldError(f"merge: one MODEL ({args.models[0]}) is not a merge; give two or more models")
    settings = MergeSettings.build(args.method, len(args.models), args.weights, args.density, args.lam,
                                   has_base=args.base is not None)
    out = merge(args.models, args.out, settings, base=args.base, progress=not args.no_progress)
    print(f"merged {len(args.models)} models ({settings.method}) into {out}")
    return 0

