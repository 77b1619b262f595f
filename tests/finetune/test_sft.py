"""Supervised fine-tuning's own rules, checked without a training run: which tokens an example holds and
which are learned (counted by hand at every truncation), what the Trainer is handed, and how generation
is batched, truncated and cut at EOS (against each prompt generated alone)."""

import json

import pytest
import torch

from twofold.finetune import sft
from twofold.finetune.generation_data import Example
from twofold.finetune.recipes import recipe_for
from twofold.finetune.scoring import generation_scores, signatures
from twofold.finetune.sft import IGNORE, Generator, decoding, encode, prompt_room
from twofold.finetune.training import OrderRecorder


@pytest.fixture(scope="module")
def generator(exports):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return Generator(AutoModelForCausalLM.from_pretrained(exports["decoder"]),
                     AutoTokenizer.from_pretrained(exports["decoder"]))


def test_bos_and_eos_are_the_tokenizers_or_its_cls_and_sep(exports):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exports["decoder"])
    tokenizer.bos_token, tokenizer.eos_token = tokenizer.pad_token, tokenizer.mask_token  # BOS/EOS apart from CLS/SEP
    named = Generator(None, tokenizer)
    assert (named.bos, named.eos) == (tokenizer.pad_token_id, tokenizer.mask_token_id)
    tokenizer.bos_token, tokenizer.eos_token = None, None  # a BERT-style tokenizer: CLS starts, SEP ends
    bert = Generator(None, tokenizer)
    assert (bert.bos, bert.eos) == (tokenizer.cls_token_id, tokenizer.sep_token_id) != (None, None)
    assert bert.ids("def f") == tokenizer("def f", add_special_tokens=False)["input_ids"]
    assert tokenizer.cls_token_id not in bert.ids("def f")  # no special tokens added


def test_the_prompt_keeps_the_room_the_new_tokens_leave_but_at_least_half_the_window():
    assert prompt_room(recipe_for("generate", max_length=48, max_new_tokens=12)) == 36
    assert prompt_room(recipe_for("generate", max_length=49, max_new_tokens=40)) == 24  # 49 // 2
    assert prompt_room(recipe_for("generate", max_length=48, max_new_tokens=24)) == 24
    assert decoding(recipe_for("generate", max_length=48, max_new_tokens=12)) == {
        "strategy": "greedy", "do_sample": False, "num_beams": 1, "max_new_tokens": 12, "prompt_tokens": 36,
        "stop": "eos", "library": "transformers generate"}
    details = sft.details(recipe_for("generate", max_length=48, max_new_tokens=12))
    assert details == {"decoding": decoding(recipe_for("generate", max_length=48, max_new_tokens=12)),
                       "signatures": signatures(), "loss": "completion tokens only"}


def fake_ids(generator, n: int, first: int = 10) -> str:
    """A text of exactly `n` tokens (single-token words of the tokenizer's vocabulary from id `first` on)."""
    words = [w for w, i in sorted(generator.tokenizer.get_vocab().items(), key=lambda x: x[1])
             if i >= first and w.isalpha() and len(generator.ids(" " + w)) == 1]
    return "".join(" " + words[i % len(words)] for i in range(n))


@pytest.mark.parametrize("prompt, completion, window, kept_prompt, kept_completion", [
    (5, 4, 64, 5, 5),  # everything fits: BOS + 5 + 4 + EOS
    (5, 4, 11, 5, 5),  # exactly fits
    (30, 4, 20, 14, 5),  # a long prompt keeps its end: 20 - 1 - 5
    (3, 30, 20, 3, 16),  # a long completion keeps its start, as much as the prompt leaves: 20 - 1 - 3
    (30, 30, 20, 9, 10),  # both long: half the window for the completion, the rest (less BOS) for the prompt
    (30, 30, 21, 10, 10),  # 21 // 2 = 10 for the completion
    (30, 30, 3, 1, 1),  # one token of each
    (30, 30, 2, 0, 1),  # no room left for the prompt: BOS and one completion token
])
def test_an_example_is_bos_prompt_completion_eos_with_only_the_completion_learned(
        generator, prompt, completion, window, kept_prompt, kept_completion):
    example = Example(fake_ids(generator, prompt), fake_ids(generator, completion, first=200))
    prompt_ids, completion_ids = generator.ids(example.prompt), generator.ids(example.completion)
    assert (len(prompt_ids), len(completion_ids)) == (prompt, completion)
    row = encode(generator, example, window)
    learned = [*completion_ids, generator.eos][:kept_completion]
    assert row["input_ids"] == [generator.bos, *prompt_ids[len(prompt_ids) - kept_prompt:], *learned]
    assert row["labels"] == [IGNORE] * (1 + kept_prompt) + learned
    assert len(row["input_ids"]) == min(window, 2 + prompt + completion)


def test_the_trainer_is_handed_the_encoded_rows_the_recipe_and_a_padding_collator(generator, tmp_path):
    examples = [Example(fake_ids(generator, 3), fake_ids(generator, 2, first=200)),
                Example(fake_ids(generator, 6), fake_ids(generator, 1, first=200))]
    recipe = recipe_for("generate", max_length=48, epochs=2, batch_size=2, warmup_ratio=0.25, weight_decay=0.1,
                        seed=7)
    built = sft.trainer(generator, examples, recipe, 3e-4, tmp_path / "work")
    assert built.model is generator.model
    assert [built.train_dataset[i] for i in range(2)] == [encode(generator, e, 48) for e in examples]
    args = built.args
    assert (args.learning_rate, args.num_train_epochs, args.per_device_train_batch_size, args.weight_decay) == \
        (3e-4, 2, 2, 0.1)
    assert (args.seed, args.data_seed, args.output_dir) == (7, 7, str(tmp_path / "work"))
    batch = built.data_collator([built.train_dataset[i] for i in range(2)])
    short = len(encode(generator, examples[0], 48)["input_ids"])
    assert batch["input_ids"].shape == (2, 9) and short == 7
    assert batch["labels"][0, short:].tolist() == [IGNORE] * 2  # padding is not learned
    assert batch["input_ids"][0, short:].tolist() == [generator.tokenizer.pad_token_id] * 2
    assert batch["attention_mask"].tolist() == [[1] * 7 + [0] * 2, [1] * 9]


def test_training_records_its_batches_and_steps(generator, tmp_path, exports):
    from transformers import AutoModelForCausalLM

    fresh = Generator(AutoModelForCausalLM.from_pretrained(exports["decoder"]), generator.tokenizer)
    before = {k: v.clone() for k, v in fresh.model.state_dict().items()}
    examples = [Example(fake_ids(generator, 3), fake_ids(generator, 2, first=200))] * 4
    recorder = OrderRecorder(None)
    sft.train(fresh, examples, recipe_for("generate", max_length=32, batch_size=2, epochs=1), 1e-3, tmp_path, recorder)
    assert (recorder.batches, recorder.steps) == (2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "the Trainer saves nothing itself"
    assert any(not torch.equal(before[k], v) for k, v in fresh.model.state_dict().items())


def test_generation_is_batched_left_padded_truncated_and_cut_at_eos(generator, monkeypatch):
    recipe = recipe_for("generate", max_length=24, max_new_tokens=6)  # prompts keep 18 - 1 tokens after BOS
    prompts = [fake_ids(generator, n) for n in (2, 5, 30)] * 13  # 39 prompts: two batches of 32 and 7
    calls = []
    real = generator.model.generate

    def generate(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(generator.model, "generate", generate)
    out = sft.generate(generator, prompts, recipe)
    assert [len(c["input_ids"]) for c in calls] == [32, 7]
    assert all((c["max_new_tokens"], c["do_sample"], c["num_beams"], c["eos_token_id"], c["pad_token_id"]) ==
               (6, False, 1, generator.eos, generator.tokenizer.pad_token_id) for c in calls)
    first = calls[0]
    assert first["input_ids"].shape[1] == 18  # the longest prompt: BOS and its last 17 tokens
    assert first["input_ids"][2].tolist() == [generator.bos, *generator.ids(prompts[2])[-17:]]
    assert first["input_ids"][0].tolist() == [generator.tokenizer.pad_token_id] * 15 + \
        [generator.bos, *generator.ids(prompts[0])]
    assert first["attention_mask"][0].tolist() == [0] * 15 + [1] * 3
    # each prompt alone, unpadded, gives the same text, cut at the first EOS
    for prompt, text in list(zip(prompts, out))[:3]:
        ids = torch.tensor([[generator.bos, *generator.ids(prompt)[-17:]]])
        new = real(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                   eos_token_id=generator.eos, pad_token_id=generator.tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
        new = new[:new.index(generator.eos)] if generator.eos in new else new
        assert text == generator.tokenizer.decode(new, skip_special_tokens=True)


def test_the_cut_at_eos_and_the_scores_of_generated_text(generator, monkeypatch):
    """A model scripted to write 'word EOS word': what follows the EOS is dropped, and the scores are sacrebleu's."""
    word = generator.ids(fake_ids(generator, 1, first=200))[0]

    def scripted(input_ids, **kwargs):
        tail = torch.tensor([[word, generator.eos, word]] * len(input_ids))
        return torch.cat([input_ids, tail], dim=1)

    monkeypatch.setattr(generator.model, "generate", scripted)
    text = generator.tokenizer.decode([word])
    examples = [Example("a", text), Example("b", "other")]
    assert sft.generate(generator, ["a", "b"], recipe_for("generate")) == [text, text]
    assert sft.score(generator, examples, recipe_for("generate")) == generation_scores([text, text], [text, "other"])


def test_a_saved_generator_loads_back_with_its_tokenizer(generator, tmp_path):
    sft.save(generator, tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == generator.model.config.model_type and (tmp_path / "out" / "tokenizer.json").is_file()
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), generator.model.state_dict().values()))


def test_build_loads_the_exports_causal_lm_and_tokenizer(exports, generator):
    from safetensors.torch import load_file

    from twofold.finetune.inputs import BaseModel

    built = sft.build(BaseModel(str(exports["decoder"]), "decoder", causal=True), recipe_for("generate"))
    saved = load_file(exports["decoder"] / "model.safetensors")
    assert torch.equal(built.model.state_dict()["model.embeddings.tok_embeddings.weight"],
                       saved["model.embeddings.tok_embeddings.weight"])
    assert built.tokenizer.get_vocab() == generator.tokenizer.get_vocab()
