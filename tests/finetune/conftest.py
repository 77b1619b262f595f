"""Tiny exports of both members (real BPE, real HF format) and tiny data files, shared by the fine-tune tests."""

import json

import pytest

import twofold
from twofold.data.stdlib import stdlib_documents
from twofold.data.tokenizer import train_tokenizer
from twofold.finetune import recipe_for
from twofold.finetune.datasets import stdlib_classification, stdlib_retrieval
from twofold.model import TwofoldModel, preset

PACKAGES = ("json", "email", "asyncio", "unittest")


def tiny_recipe(task: str, **changes):
    """Seconds per fine-tune on 2 cores: short texts, small batches, one epoch."""
    defaults = dict(batch_size=8, mini_batch_size=8, max_length=48, query_length=16, epochs=1)
    if task == "classify":
        defaults["learning_rates"] = (3e-4,)
    return recipe_for(task, **{**defaults, **changes})


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """{'encoder': dir, 'decoder': dir}: tiny random members exported with their tokenizer (a pair folder)."""
    root = tmp_path_factory.mktemp("pair")
    texts = [d.text for d in stdlib_documents("train", packages=["json", "textwrap"])]
    tokenizer = train_tokenizer(texts, 512, root / "tokenizer")
    s = tokenizer.special
    found = {}
    for member, causal in (("encoder", False), ("decoder", True)):
        config = preset("tiny", causal=causal, vocab_size=tokenizer.vocab_size, cls_token_id=s.cls,
                        sep_token_id=s.sep, pad_token_id=s.pad, mask_token_id=s.mask, bos_token_id=s.bos,
                        eos_token_id=s.eos)
        found[member] = twofold.save(TwofoldModel(config), root / member, tokenizer=root / "tokenizer")
    return found


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory):
    """40 docstring-line -> code pairs of the built-in set, as a JSONL file."""
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    rows = stdlib_retrieval(PACKAGES).train[:40]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="session")
def labels_file(tmp_path_factory):
    """48 docstring -> package examples as a TSV file (GLUE-style, header line)."""
    data = stdlib_classification(PACKAGES)
    path = tmp_path_factory.mktemp("data") / "packages.tsv"
    lines = ["sentence\tlabel"] + [f"{' '.join(t[0].split())}\t{data.labels[y]}" for t, y in data.train[:48]]
    path.write_text("\n".join(lines) + "\n")
    return path


# Two made-up languages for translation: Kelo words map one to one onto Vora words, in the same order.
KELO_VORA = {"ama": "tusi", "beko": "rano", "cilu": "pewa", "dora": "mifo", "eni": "sal", "fasu": "koti",
             "gimo": "vela", "hale": "nuri", "ito": "bam", "juna": "loke", "kami": "zeto", "lore": "wipa"}


def made_up_corpus(folder, name: str, sentences: int, seed: int):
    """`folder/name.kelo` and `folder/name.vora`: `sentences` lines of 3-6 Kelo words and their Vora translation."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words = sorted(KELO_VORA)
    kelo = [" ".join(words[i] for i in rng.integers(len(words), size=rng.integers(3, 7))) for _ in range(sentences)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.kelo").write_text("".join(f"{line}\n" for line in kelo))
    (folder / f"{name}.vora").write_text("".join(" ".join(KELO_VORA[w] for w in line.split()) + "\n" for line in kelo))
    return f"{folder / name}.kelo,{folder / name}.vora"


@pytest.fixture(scope="session")
def kelo_vora(tmp_path_factory):
    """{'train', 'dev', 'test'}: parallel files (SOURCE,TARGET specs) of the made-up pair, small enough for seconds."""
    folder = tmp_path_factory.mktemp("kelo-vora")
    return {split: made_up_corpus(folder, split, n, seed) for split, n, seed in
            (("train", 48, 0), ("dev", 8, 1), ("test", 8, 2))}
