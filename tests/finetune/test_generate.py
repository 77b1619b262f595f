"""finetune generate: a decoder learns prompt -> completion with the loss on the completion only, and is
scored by generation with sacrebleu, as `twofold eval --task generate` scores it too."""

import json

import pytest
import torch

from twofold.cli import main
from twofold.finetune import RECORD
from twofold.finetune.generate import finetune_generate
from twofold.finetune.generation_data import Example, load_generation
from twofold.finetune.recipes import recipe_for
from twofold.finetune.scoring import signatures
from twofold.finetune.sft import IGNORE, Generator, encode, generate, trainer
from twofold.results import load_results

TEMPLATE = "Kelo: {source}\nVora:"
FAST = ["--epochs", "1", "--batch-size", "8", "--max-length", "48", "--max-new-tokens", "12"]


def generator_of(path) -> Generator:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return Generator(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path))


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, exports, kelo_vora):
    """The CLI's fine-tune of the tiny decoder on the made-up pair, with a two-rate sweep selected on dev."""
    out = tmp_path_factory.mktemp("gen") / "out"
    assert main(["finetune", "generate", str(exports["decoder"]), "--data", kelo_vora["train"], "--dev",
                 kelo_vora["dev"], "--test", kelo_vora["test"], "--template", TEMPLATE, "--lr", "1e-3,3e-3",
                 "--out", str(out), *FAST]) == 0
    return out


def test_the_cli_fine_tune_writes_a_causal_lm_its_record_and_results(finetuned, exports):
    from safetensors.torch import load_file

    record = json.loads((finetuned / RECORD).read_text())
    assert record["task"] == "generate" and record["member"] == "decoder" and record["metric"] == "chrf"
    assert record["pooling"] == "none"
    assert [s["learning_rate"] for s in record["sweep"]] == [1e-3, 3e-3]
    best = max(record["sweep"], key=lambda s: s["dev"]["chrf"])  # the sweep keeps the best dev chrF
    assert record["selected"]["learning_rate"] == best["learning_rate"] and record["test"] == best["test"]
    assert set(record["test"]) == {"chrf", "chrf++", "bleu", "exact_match"} == set(record["before"]["test"])
    assert record["decoding"]["strategy"] == "greedy" and record["decoding"]["max_new_tokens"] == 12
    assert record["signatures"] == signatures() and "nc:6|nw:2" in record["signatures"]["chrf++"]
    assert record["data"]["examples"] == {"train": 48, "dev": 8, "test": 8}
    before = load_file(exports["decoder"] / "model.safetensors")["model.layers.0.mlp.Wi.weight"]
    after = load_file(finetuned / "model.safetensors")["model.layers.0.mlp.Wi.weight"]
    assert not torch.equal(before, after)
    written = {r.variant: r for r in load_results(finetuned / "results")}
    assert record["data"]["name"] == "kelo-vora"
    assert written["kelo-vora"].metrics == record["test"]
    assert written["kelo-vora/before"].metrics == record["before"]["test"]
    assert written["kelo-vora"].details["signatures"] == record["signatures"]
    assert written["kelo-vora/before"].details["decoding"] == record["decoding"]


def test_the_recorded_scores_are_sacrebleus_on_the_kept_models_generations(finetuned, kelo_vora):
    """Generate again with the saved model and the recorded decoding settings; sacrebleu's own functions agree."""
    import sacrebleu

    record = json.loads((finetuned / RECORD).read_text())
    test = load_generation(kelo_vora["train"], kelo_vora["dev"], kelo_vora["test"], template=TEMPLATE).test
    recipe = recipe_for("generate", max_length=48, max_new_tokens=record["decoding"]["max_new_tokens"])
    hypotheses = [h.strip() for h in generate(generator_of(finetuned), [e.prompt for e in test], recipe)]
    references = [e.completion for e in test]
    assert record["test"]["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, [references]).score)
    assert record["test"]["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def test_eval_task_generate_scores_what_the_fine_tune_recorded(finetuned, kelo_vora, tmp_path):
    """twofold's own generate (eval) and transformers' generate (fine-tune) write the same completions."""
    record = json.loads((finetuned / RECORD).read_text())
    out = tmp_path / "eval"
    assert main(["eval", str(finetuned), "--task", "generate", "--generate-data", kelo_vora["train"],
                 "--generate-test", kelo_vora["test"], "--template", TEMPLATE, "--max-length", "48",
                 "--max-new-tokens", "12", "--out", str(out)]) == 0
    [result] = load_results(out)
    assert result.metrics == pytest.approx(record["test"]) and result.n == 8
    assert result.details["signatures"] == record["signatures"]


def test_eval_task_generate_says_an_encoder_cannot_generate(exports, kelo_vora):
    import twofold
    from twofold.data.tokenizer import load_tokenizer
    from twofold.eval.settings import Settings
    from twofold.eval.tasks import evaluate

    [result] = evaluate(twofold.load(exports["encoder"]), load_tokenizer(exports["encoder"]), ["generate"],
                        settings=Settings(generate_test=kelo_vora["test"]))
    assert "is an encoder" in result.error and "--init-from" in result.error and not result.metrics


# ----------------------------------------------------------------------------- the loss

def test_prompt_positions_carry_label_minus_100_and_a_long_example_keeps_the_prompt_end(exports):
    generator = generator_of(exports["decoder"])
    example = Example("Kelo: ama beko\nVora:", " tusi rano")
    prompt, completion = generator.ids(example.prompt), generator.ids(example.completion)
    row = encode(generator, example, 64)
    assert row["input_ids"] == [generator.bos, *prompt, *completion, generator.eos]
    assert row["labels"] == [IGNORE] * (1 + len(prompt)) + [*completion, generator.eos]
    short = encode(generator, example, 6)  # room for BOS, the prompt's last tokens and half the window
    assert len(short["input_ids"]) == 6 and short["input_ids"][0] == generator.bos
    learned = [t for t in short["labels"] if t != IGNORE]
    assert learned == completion[:len(learned)] and len(learned) >= 3
    assert short["input_ids"][1:6 - len(learned)] == prompt[-(5 - len(learned)):]


def test_the_loss_is_the_completions_mean_nll_and_prompt_predictions_get_no_gradient(finetuned, kelo_vora,
                                                                                       tmp_path):
    """The Trainer's loss on a collated batch, against one computed by hand over the completion positions
    only; the gradient reaching the logits that predict prompt tokens (or padding) is exactly zero. The model
    is the fine-tuned one, whose losses on prompt and completion tokens differ (a fresh one's are all ~log V)."""
    generator = generator_of(finetuned)
    examples = load_generation(kelo_vora["train"], template=TEMPLATE).train[:4]
    built = trainer(generator, examples, recipe_for("generate", max_length=48), 1e-3, tmp_path)
    batch = built.data_collator([built.train_dataset[i] for i in range(4)])
    labels = batch["labels"]
    assert (labels == IGNORE).any(dim=1).all() and (labels != IGNORE).any(dim=1).all()
    generator.model.train(False)

    out = generator.model(**batch)
    out.logits.retain_grad()
    loss = built.compute_loss(generator.model, batch)
    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-6)

    log_probs = out.logits[:, :-1].log_softmax(-1)  # position t predicts token t + 1
    targets = batch["input_ids"][:, 1:]
    learned = labels[:, 1:] != IGNORE  # the completion and its EOS, nothing else
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert loss.item() == pytest.approx(nll[learned].mean().item(), rel=1e-5)
    real = batch["attention_mask"][:, 1:].bool()
    assert abs(loss.item() - nll[real].mean().item()) > 0.1  # the loss over every token is another number

    out.loss.backward()
    grad = out.logits.grad[:, :-1].abs().sum(-1)
    assert (grad[~learned] == 0).all() and (grad[learned] > 0).all()
    # whatever the model predicts where the prompt is, the loss is the same
    noisy = out.logits.detach().clone()
    noisy[:, :-1][~learned] = torch.randn_like(noisy[:, :-1][~learned]) * 10
    same = generator.model.loss_function(noisy, labels, vocab_size=noisy.shape[-1])
    assert same.item() == pytest.approx(out.loss.item(), rel=1e-6)


def test_finetune_generate_returns_chrf_before_and_after_as_recorded(exports, kelo_vora, tmp_path):
    data = load_generation(kelo_vora["train"], kelo_vora["dev"], kelo_vora["test"], template=TEMPLATE)
    found = finetune_generate(exports["decoder"], data, tmp_path / "out", seed=1, learning_rates=(1e-3,), epochs=1,
                              batch_size=8, max_length=48, max_new_tokens=8, say=lambda *_: None)
    record = json.loads((tmp_path / "out" / RECORD).read_text())
    assert found["chrf_before"] == record["before"]["test"]["chrf"] and found["chrf_after"] == record["test"]["chrf"]
    assert record["recipe"]["seed"] == 1 and found["examples"] == {"train": 48, "dev": 8, "test": 8}


# ----------------------------------------------------------------------------- the worked example (docs)

@pytest.mark.slow
def test_translation_between_two_made_up_languages_improves_chrf(tmp_path, exports, capsys):
    """docs/finetuning.md "Generation and translation": the corpus and the command it shows, its chrF.
    The decoder is the fixtures' shape and tokenizer with weights drawn from seed 0, so the numbers repeat."""
    import twofold
    from twofold.data.tokenizer import load_tokenizer
    from twofold.model import TwofoldModel, preset

    from .conftest import made_up_corpus

    bpe = exports["decoder"].parent / "tokenizer"
    tokenizer = load_tokenizer(bpe)
    s = tokenizer.special
    config = preset("tiny", causal=True, vocab_size=tokenizer.vocab_size, cls_token_id=s.cls, sep_token_id=s.sep,
                    pad_token_id=s.pad, mask_token_id=s.mask, bos_token_id=s.bos, eos_token_id=s.eos)
    torch.manual_seed(0)
    decoder = twofold.save(TwofoldModel(config), tmp_path / "decoder", tokenizer=bpe)
    corpus = tmp_path / "kelo-vora"
    splits = {split: made_up_corpus(corpus, split, n, seed) for split, n, seed in
              (("train", 400, 0), ("dev", 40, 1), ("test", 40, 2))}
    out = tmp_path / "kelo-vora-ft"
    assert main(["finetune", "generate", str(decoder), "--data", splits["train"], "--dev", splits["dev"],
                 "--test", splits["test"], "--template", "Kelo: {source}\nVora:", "--lr", "1e-2", "--epochs", "12",
                 "--batch-size", "16", "--max-length", "64", "--max-new-tokens", "24", "--out", str(out)]) == 0
    print(capsys.readouterr().out)
    record = json.loads((out / RECORD).read_text())
    assert record["test"]["chrf"] > record["before"]["test"]["chrf"] + 30


def test_a_pair_fine_tunes_its_decoder_and_says_why_the_encoder_is_left_out(tmp_path, exports, kelo_vora, capsys):
    """`--pair` with a task one member cannot do fine-tunes the member that can (generate: the
    decoder), names the other with the way to make it able, and records it."""
    out = tmp_path / "pair-gen"
    assert main(["finetune", "generate", "--pair", str(exports["encoder"].parent), "--data", kelo_vora["train"],
                 "--dev", kelo_vora["dev"], "--test", kelo_vora["test"], "--template", TEMPLATE, "--lr", "1e-3",
                 "--out", str(out), *FAST]) == 0
    said = capsys.readouterr().out
    assert "left out:" in said and "encoder is an encoder" in said and "--init-from" in said
    record = json.loads((out / RECORD).read_text())
    assert record["members"] == ["decoder"] and list(record["left_out"]) == ["encoder"]
    assert record["data_order_identical"] is None  # one member: nothing to compare
    assert (out / "decoder" / "model.safetensors").is_file() and not (out / "encoder").exists()
