"""Exports used unchanged by the field's libraries see what twofold sees: the four ways they could disagree.

Each test runs the real library on a real export of a tiny model with the real BPE tokenizer.
"""

import warnings
from pathlib import Path

import pytest
import torch
import transformers

import twofold
from twofold.errors import TwofoldError
from twofold.eval.tasks.lm import continuation_logprob
from twofold.eval.text import frame, pad
from twofold.model.heads import SequenceClassifier


def export(model, tokenizer, path: Path) -> Path:
    return twofold.save(model, path, tokenizer=Path(tokenizer.source).parent)


def test_lm_eval_scores_exactly_the_continuation_and_agrees_with_twofold(tmp_path, tokenizer, decoder):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    path = export(decoder, tokenizer, tmp_path / "decoder")
    lm = HFLM(pretrained=str(path), device="cpu", batch_size=1, dtype="float32")
    requests = [("import", " os"), ("def read(path):", "\n    return open(path)"), ("x = ", "1")]
    for context, continuation in requests:
        _, scored = lm._encode_pair(context, continuation)
        whole = tokenizer.encode_batch([context + continuation])[0]
        assert tokenizer.special.sep not in scored and scored == whole[-len(scored):]
    instances = [Instance("loglikelihood", {}, request, i) for i, request in enumerate(requests)]
    theirs = lm.loglikelihood(instances, disable_tqdm=True)
    for (context, continuation), (logprob, greedy) in zip(requests, theirs):
        ours, our_greedy = continuation_logprob(decoder, tokenizer, context, continuation)
        assert ours == pytest.approx(logprob, abs=1e-4) and our_greedy == greedy


def test_text_generation_prompts_end_in_the_text_not_eos(tmp_path, tokenizer, decoder):
    path = export(decoder, tokenizer, tmp_path / "decoder")
    generator = transformers.pipeline("text-generation", model=str(path), device="cpu")
    prompt = "import os\n\n\ndef"
    ids = generator.preprocess(prompt)["input_ids"][0].tolist()
    assert ids == [tokenizer.special.bos, *tokenizer.encode_batch([prompt])[0]]
    out = generator(prompt, max_new_tokens=4, do_sample=False, return_tensors=True)[0]["generated_token_ids"]
    ours = decoder.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False,
                            eos_token_id=tokenizer.special.eos, pad_token_id=tokenizer.special.pad)[0]
    assert list(out) == ours.tolist()[:len(out)]


def test_twofold_frames_texts_as_each_exported_tokenizer_does(tmp_path, tokenizer, encoder, decoder):
    texts = ["import os", ("a query", "a document")]
    for model in (encoder, decoder):
        hf = transformers.AutoTokenizer.from_pretrained(export(model, tokenizer, tmp_path / str(model.config.causal)))
        theirs = [hf(text)["input_ids"] if isinstance(text, str) else hf(*text)["input_ids"] for text in texts]
        assert frame(tokenizer, texts, 64, model.config.causal) == theirs
    assert theirs[0][-1] != tokenizer.special.eos  # the decoder's: BOS only


def test_fill_mask_pipeline_absorbs_the_space_before_mask(tmp_path, tokenizer, encoder):
    path = export(encoder, tokenizer, tmp_path / "encoder")
    fill = transformers.pipeline("fill-mask", model=str(path), device="cpu", top_k=3)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    ids = hf_tokenizer("x = [MASK]")["input_ids"]
    assert ids[-2] == tokenizer.special.mask and hf_tokenizer.convert_ids_to_tokens(ids[-3]) == "Ġ="
    guesses = fill("x = [MASK]")
    ours = encoder.fill_mask(torch.tensor(ids), top_k=3)[0]
    assert [g["token"] for g in guesses] == [g["token_id"] for g in ours]
    assert [g["score"] for g in guesses] == pytest.approx([g["score"] for g in ours], abs=1e-5)


@pytest.mark.parametrize("causal,pooling", [(False, "mean"), (False, "cls"), (True, "last")])
def test_classifier_exports_the_pooling_it_was_trained_with(tmp_path, tokenizer, causal, pooling):
    from tests.eval.conftest import tiny_model

    body = tiny_model(tokenizer, causal)
    classifier = SequenceClassifier(body.config, num_labels=3, pooling=pooling).eval()
    export(classifier, tokenizer, tmp_path / "classifier")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "classifier").eval()
    ids, mask = pad(frame(tokenizer, ["import os", "def f(x):\n    return x * 2", "a"], 32, causal),
                    tokenizer.special.pad)
    with torch.no_grad():
        assert (hf(input_ids=ids, attention_mask=mask).logits - classifier(ids, mask).logits).abs().max() < 1e-5


def test_a_classifier_transformers_cannot_pool_is_refused(tmp_path, tokenizer, decoder):
    classifier = SequenceClassifier(decoder.config, num_labels=2, pooling="mean")
    with pytest.raises(TwofoldError, match="'mean' pooling has no transformers equivalent"):
        twofold.save(classifier, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_special_ids_outside_the_vocabulary_load_with_one_warning(tmp_path):
    config = transformers.ModernBertConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                           num_attention_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                           cls_token_id=1, sep_token_id=2)  # mask_token_id: the default 50284
    reference = transformers.ModernBertForMaskedLM(config).eval()
    reference.save_pretrained(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = twofold.load(tmp_path)
    outside = [w for w in caught if "outside the vocabulary" in str(w.message)]
    assert len(outside) == 1 and "mask_token_id 50284" in str(outside[0].message)
    assert model.config.mask_token_id is None
    ids = torch.tensor([[1, 7, 9, 5, 2]])
    with torch.no_grad():
        assert (model(ids).logits - reference(input_ids=ids).logits).abs().max() < 1e-5
    with pytest.raises(TwofoldError, match="pass mask_token_id"):
        model.fill_mask(ids[0])
    assert len(model.fill_mask(ids[0], mask_token_id=5)) == 1
