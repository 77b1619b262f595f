"""Special ids come from the tokenizer, not the preset: a tokenizer whose specials sit where no
preset puts them (cls 7, sep 6, pad 5, mask 4, unk 3; the small presets use 0–3) trains, masks
and exports with its own ids."""

import pytest
import torch
import transformers
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from twofold.data.objectives import IGNORE_INDEX
from twofold.data.sources import SourceSpec
from twofold.data.stdlib import stdlib_documents
from twofold.data.store import prepare_store
from twofold.data.tokenizer import SpecialIds, load_tokenizer, save_tokenizer
from twofold.model import preset
from twofold.train import loop, runs
from twofold.train.distributed import World
from twofold.train.recipe import load_recipe
from twofold.train.rundir import RunDir

ORDER = ["<extra0>", "<extra1>", "<extra2>", "[UNK]", "[MASK]", "[PAD]", "[SEP]", "[CLS]"]
IDS = dict(cls=7, sep=6, pad=5, mask=4, unk=3)


@pytest.fixture(scope="module")
def odd_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    backend = BackendTokenizer(models.BPE(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=ORDER, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator((d.text for d in stdlib_documents(packages=["json"])), trainer=trainer)
    save_tokenizer(backend, SpecialIds(**IDS), root / "tokenizer")
    tokenizer = load_tokenizer(root / "tokenizer")
    assert tokenizer.special == SpecialIds(**IDS)
    prepare_store([SourceSpec("stdlib", packages="json")], tokenizer, root / "store", progress=False)
    return root / "store"


def test_a_run_uses_the_tokenizer_s_special_ids(tmp_path, odd_store, tiny_recipe, monkeypatch):
    small = preset("tiny")
    assert {small.cls_token_id, small.sep_token_id, small.pad_token_id, small.mask_token_id}.isdisjoint(
        {IDS["cls"], IDS["sep"], IDS["pad"], IDS["mask"]})  # the preset's ids would be wrong here
    seen = []
    real_forward = loop.forward
    monkeypatch.setattr(loop, "forward", lambda model, batch: (seen.append(batch), real_forward(model, batch))[1])
    recipe = load_recipe(str(tiny_recipe), scale=0.25)
    options = loop.Options(stores=(str(odd_store),), objective="mlm", progress=False)
    run = RunDir(runs.start(tmp_path / "enc", recipe, options, World()))

    inputs = torch.cat([b.input_ids for b in seen])
    labels = torch.cat([b.labels for b in seen])
    starts = torch.cat([b.input_ids[b.cu_seqlens[:-1].long()] for b in seen])
    masked = labels != IGNORE_INDEX
    assert (inputs[masked] == IDS["mask"]).float().mean() > 0.6  # 80% of the chosen become [MASK]
    assert not torch.isin(labels[masked], torch.tensor(list(IDS.values()))).any()  # specials never chosen
    assert (starts == IDS["cls"]).any() and not (inputs == small.cls_token_id).any()

    out = run.export(tmp_path / "hf")
    config = transformers.AutoConfig.from_pretrained(out)
    got = {name: getattr(config, f"{name}_token_id") for name in ("cls", "sep", "pad", "mask")}
    assert got == {name: IDS[name] for name in got}
    assert (config.bos_token_id, config.eos_token_id) == (IDS["cls"], IDS["sep"])
    model = run.model()
    tokenizer = load_tokenizer(odd_store.parent / "tokenizer")
    (predictions,) = model.fill_mask("import json [MASK]", tokenizer.backend, top_k=2)  # finds its [MASK]
    assert len(predictions) == 2
