"""`twofold data …`: tokenizers, token stores, mixture plans and logged batches."""

from __future__ import annotations

import argparse
import itertools
import math
from dataclasses import fields

from twofold.commands import POSITIVE, at_least, given, token_count
from twofold.commands.recipe import RECIPE_FLAGS, add_recipe_arguments
from twofold.data.sources import SourceSpec
from twofold.data.store import CHUNK_CHARS
from twofold.errors import TwofoldError

_SOURCE_HELP = ("a source: PATH (text file/dir, .jsonl, .parquet), 'stdlib', or key=value,… e.g. "
                "path=fr.jsonl,group=fr,text_field=content (keys: "
                + " ".join(f.name for f in fields(SourceSpec)) + ")")


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="tokenizers, token stores, mixtures, batches",
                                   description="Prepare and inspect training data.")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    defaults = argparse.ArgumentDefaultsHelpFormatter

    prepare = commands.add_parser("prepare", help="tokenize sources into a token store",
                                  formatter_class=defaults)
    prepare.add_argument("--source", action="append", required=True, help=_SOURCE_HELP)
    prepare.add_argument("--tokenizer", required=True, help="tokenizer.json or tokenizer directory")
    prepare.add_argument("--out", required=True, help="store directory to create")
    prepare.add_argument("--skip-bad-lines", action="store_true",
                         help="JSONL: skip and count bad lines instead of stopping")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing store")
    prepare.add_argument("--chunk-chars", type=at_least(1), default=CHUNK_CHARS,
                         help="characters tokenized per chunk (bounds memory use)")
    prepare.set_defaults(func=run_prepare)

    info = commands.add_parser("info", help="print a store's manifest as a table")
    info.add_argument("store")
    info.add_argument("--verify", action="store_true", help="recompute the data files' checksums")
    info.set_defaults(func=run_info)

    plan = commands.add_parser("plan", help="each group's (language's) share per phase of a recipe, or epochs "
                               "per group of one mixture for a token budget", formatter_class=defaults)
    plan.add_argument("--store", action="append", required=True, help="token store (repeatable)")
    plan.add_argument("--recipe", help="a recipe preset or .yaml: the share of every group in each of its phases")
    add_recipe_arguments(plan)
    plan.add_argument("--mixture", help="YAML file with weights / temperature / groups")
    plan.add_argument("--temperature", type=POSITIVE, help="p_i ∝ n_i^τ over token counts")
    plan.add_argument("--weights", help="explicit weights: group=w,group=w")
    plan.add_argument("--include", help="groups of this phase: g1,g2 (default: all)")
    plan.add_argument("--tokens", type=token_count, help="token budget of one mixture, e.g. 1.7T, 250B, 5e6")
    plan.add_argument("--png", default="mixture_plan.png", help="bar chart to write")
    plan.set_defaults(func=run_plan)

    show = commands.add_parser("show-batch", help="print the batch a run consumed at a step")
    show.add_argument("run_dir")
    show.add_argument("--step", type=at_least(0), required=True)
    show.add_argument("--rank", type=at_least(0), help="only this rank (default: all logged ranks)")
    show.add_argument("--decode", action="store_true", help="print text instead of token ids")
    show.add_argument("--tokenizer", help="tokenizer for --decode (default: the store's)")
    show.set_defaults(func=run_show_batch)

    tokenizer = commands.add_parser("tokenizer", help="train or inspect tokenizers")
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND",
                                                  required=True)
    train = tokenizer_commands.add_parser("train", help="train a byte-level BPE with [CLS] [SEP] "
                                          "[PAD] [MASK] [UNK]", formatter_class=defaults)
    train.add_argument("--source", action="append", required=True, help=_SOURCE_HELP)
    train.add_argument("--vocab-size", type=at_least(1), required=True)
    train.add_argument("--out", required=True, help="directory for tokenizer.json + config")
    train.add_argument("--max-docs", type=at_least(1), help="train on the first N documents only")
    train.add_argument("--min-frequency", type=at_least(1), default=2)
    train.set_defaults(func=run_tokenizer_train)
    show_tokenizer = tokenizer_commands.add_parser("info", help="vocab size and special ids")
    show_tokenizer.add_argument("path")
    show_tokenizer.set_defaults(func=run_tokenizer_info)


def run_prepare(args) -> int:
    from dataclasses import replace

    from twofold.data.sources import parse_source_spec
    from twofold.data.store import prepare_store
    from twofold.data.tokenizer import load_tokenizer

    specs = [parse_source_spec(text) for text in args.source]
    if args.skip_bad_lines:
        specs = [replace(spec, skip_bad_lines=True) for spec in specs]
    tokenizer = load_tokenizer(args.tokenizer)
    manifest = prepare_store(specs, tokenizer, args.out, overwrite=args.overwrite,
                             chunk_chars=args.chunk_chars)
    print(f"{args.out}: {manifest['num_documents']:,} documents, {manifest['num_tokens']:,} tokens, "
          f"fingerprint {manifest['fingerprint'][:16]}")
    return 0


def run_info(args) -> int:
    from twofold.data.store import TokenStore

    store = TokenStore(args.store)
    manifest = store.manifest
    tokenizer = manifest["tokenizer"]
    print(f"store        {store.path}")
    print(f"fingerprint  {manifest['fingerprint']}")
    print(f"tokens       {manifest['num_tokens']:,} ({manifest['dtype']}) in "
          f"{manifest['num_documents']:,} documents")
    print(f"tokenizer    {tokenizer['path']} (vocab {tokenizer['vocab_size']}, "
          f"hash {tokenizer['hash'][:12]})")
    print(f"special ids  {' '.join(f'{k} {v}' for k, v in tokenizer['special_ids'].items())}")
    print()
    print(f"{'source':<20} {'kind':<8} {'documents':>10} {'tokens':>14} {'bad lines':>10} "
          f"{'replaced':>9}  location")
    for s in manifest["sources"]:
        print(f"{s['name']:<20} {s['kind']:<8} {s['documents']:>10,} {s['tokens']:>14,} "
              f"{s['bad_lines_skipped']:>10,} {s['replaced_characters']:>9,}  {s['location']}")
    print()
    print(f"{'group':<20} {'documents':>10} {'tokens':>14} {'share':>7}")
    for g in manifest["groups"]:
        share = g["tokens"] / max(manifest["num_tokens"], 1)
        print(f"{g['name']:<20} {g['documents']:>10,} {g['tokens']:>14,} {share:>7.1%}")
    print()
    for name, checksum in manifest["files"].items():
        print(f"{name:<16} sha256 {checksum[:16]}")
    if args.verify:
        store.verify()
        print("checksums    ok")
    return 0


def run_plan(args) -> int:
    from twofold.data.mixture import Mixture, format_plan, load_mixture, plan, plot_plan
    from twofold.data.sampling import Corpus
    from twofold.data.store import TokenStore

    if args.recipe:
        return _plan_recipe(args)
    unread = given(args, RECIPE_FLAGS)
    if unread:
        raise TwofoldError(f"plan: {unread[0]} changes the recipe of --recipe, which is not given; drop "
                           f"{'/'.join(unread)} or add --recipe")
    if args.tokens is None:
        raise TwofoldError("plan: give --recipe (shares per phase) or --tokens with a mixture")
    inline = given(args, {"temperature": "--temperature", "weights": "--weights", "include": "--include"})
    if args.mixture and inline:
        raise TwofoldError(f"plan: --mixture FILE holds the weights, temperature and groups; drop {'/'.join(inline)}")
    if args.mixture:
        mixture = load_mixture(args.mixture)
    else:
        groups = tuple(g for g in args.include.split(",") if g) if args.include else None
        mixture = Mixture(weights=_parse_weights(args.weights) if args.weights else None,
                          temperature=args.temperature, groups=groups)
    corpus = Corpus([TokenStore(path) for path in args.store])
    rows = plan(mixture, corpus.group_tokens, args.tokens)
    print(format_plan(rows))
    path = plot_plan(rows, args.png, title=f"mixture plan for {args.tokens} tokens")
    print(f"wrote {path}")
    return 0


_MIXTURE_FLAGS = {"mixture": "--mixture", "temperature": "--temperature", "weights": "--weights",
                  "include": "--include", "tokens": "--tokens"}  # one mixture's plan, not a recipe's


def _plan_recipe(args) -> int:
    from twofold.data.mixture import format_phase_shares, plan, plot_phase_shares
    from twofold.data.sampling import Corpus
    from twofold.data.store import TokenStore
    from twofold.train.recipe import load_recipe

    unread = given(args, _MIXTURE_FLAGS)
    if unread:
        raise TwofoldError(f"plan: --recipe takes each phase's mixture and tokens from the recipe; "
                           f"drop {'/'.join(unread)} (or use --set)")
    recipe = load_recipe(args.recipe, size=args.size, overrides=args.overrides, scale=args.scale,
                         budget=args.budget, variant=args.variant, batch_scale=args.batch_scale)
    group_tokens = Corpus([TokenStore(path) for path in args.store]).group_tokens
    recipe.check_groups(group_tokens)
    plans = {p.name: plan(p.mixture, group_tokens, p.tokens) for p in recipe.phases}
    print(format_phase_shares(plans, group_tokens))
    for name, rows in plans.items():
        most = max(rows, key=lambda r: r.epochs)
        print(f"{name}: {len(rows)} groups, most repeated {most.group} ({most.epochs:.2f} epochs of its tokens)")
    title = " ".join(["shares per phase:", recipe.name, *filter(None, [recipe.size, recipe.variant])])
    print(f"wrote {plot_phase_shares(plans, group_tokens, args.png, title=title)}")
    return 0


def run_show_batch(args) -> int:
    from twofold.data.objectives import IGNORE_INDEX
    from twofold.data.orderlog import read_description, replay_batch
    from twofold.data.store import TokenStore

    batches = replay_batch(args.run_dir, args.step, args.rank)
    description = read_description(args.run_dir)
    stores = [TokenStore(path) for path in description["stores"]]
    tokenizer = None
    if args.decode:
        from twofold.data.tokenizer import load_tokenizer

        path = args.tokenizer or stores[0].manifest["tokenizer"]["path"]
        tokenizer = load_tokenizer(path)
    print(f"step {args.step} of {args.run_dir}: objective {description['objective']}, "
          f"seq_len {description['seq_len']}, seed {description['seed']}")
    for batch in batches:
        print(f"rank {batch.rank}: {batch.num_sequences} sequences, {batch.num_tokens} tokens, "
              f"{batch.num_targets} targets, hash {batch.token_hash}")
        offsets = batch.sequence_offsets.tolist()
        for j, segments in enumerate(batch.segments):
            start, stop = offsets[j], offsets[j + 1]
            if "order" in description:  # a replayed order's row: file and row
                names = ", ".join(f"{description['order']['files'][s]}:{d}" for s, d, _, _ in segments)
            else:
                names = ", ".join(f"{stores[s].doc_ids[d]}[{b}:{e}]" for s, d, b, e in segments)
            print(f"  sequence {batch.first_sequence + j} ({batch.groups[j]}): {names}")
            ids = batch.input_ids[start:stop].tolist()
            if tokenizer is None:
                print(f"    input_ids {ids}")
                print(f"    labels    {batch.labels[start:stop].tolist()}")
            else:
                print("    " + tokenizer.decode(ids).replace("\n", "\n    "))
                targets = [t for t in batch.labels[start:stop].tolist() if t != IGNORE_INDEX]
                print(f"    [{len(targets)} targets]")
    return 0


def run_tokenizer_train(args) -> int:
    from twofold.data.sources import parse_source_spec, read_documents
    from twofold.data.tokenizer import train_tokenizer

    documents = itertools.chain.from_iterable(
        read_documents(parse_source_spec(text)) for text in args.source)
    texts = (d.text for d in itertools.islice(documents, args.max_docs))
    tokenizer = train_tokenizer(texts, args.vocab_size, args.out, min_frequency=args.min_frequency)
    print(f"{args.out}: byte-level BPE, vocab {tokenizer.vocab_size}, special ids "
          f"{tokenizer.special.to_dict()}")
    return 0


def run_tokenizer_info(args) -> int:
    from twofold.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(args.path)
    print(f"{tokenizer.source}: vocab {tokenizer.vocab_size}, hash {tokenizer.hash[:16]}")
    print(f"special ids  {' '.join(f'{k} {v}' for k, v in tokenizer.special.to_dict().items())}")
    return 0


def _parse_weights(text: str) -> dict[str, float]:
    weights = {}
    for item in text.split(","):
        group, sep, value = item.partition("=")
        try:
            weights[group.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not group.strip() or not math.isfinite(weights.get(group.strip(), 0.0)):
            raise TwofoldError(f"--weights: bad item {item!r}; write group=weight,group=weight with finite weights")
    return weights
