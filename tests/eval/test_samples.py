"""The report's decoder samples: drawn as the field draws open-ended text (nucleus sampling with a
temperature), repeatable from the recorded seed."""

from tests.eval.conftest import TINY

from twofold.eval.tasks.samples import PROMPTS, SAMPLING, continuations, samples
from twofold.eval.tasks.subject import Subject
from twofold.report import samples_markdown


def outputs(subject, seed, **changes):
    return [s["output"] for s in continuations(subject, TINY.replace(seed=seed, max_new_tokens=12, **changes))]


def test_samples_are_drawn_with_the_recorded_settings_and_seed(decoder, tokenizer):
    subject = Subject(decoder, tokenizer, "decoder")
    result = samples(subject, TINY.replace(seed=7, max_new_tokens=12))[0]
    assert result.details["decoding"] == {**SAMPLING, "seed": 7, "max_new_tokens": 12}
    assert SAMPLING["do_sample"] and SAMPLING["top_p"] < 1 and SAMPLING["temperature"] < 1
    assert [s["output"] for s in result.details["samples"]] == outputs(subject, 7)  # the seed repeats them
    assert outputs(subject, 8) != outputs(subject, 7)  # another seed draws others: sampled, not greedy
    shown = samples_markdown([result])
    assert "temperature 0.8, top-p 0.95, seed 7" in shown and len(shown.splitlines()) == 1 + len(PROMPTS)


def test_a_decoder_sampled_does_not_write_what_greedy_decoding_writes(decoder, tokenizer):
    """Greedy decoding writes one fixed text per prompt (a small model repeats itself); samples differ."""
    import torch

    from twofold.eval.text import pad

    subject = Subject(decoder, tokenizer, "decoder")
    special = tokenizer.special
    ids, mask = pad([[special.bos, *row] for row in tokenizer.encode_batch(list(PROMPTS))], special.pad,
                    torch.device("cpu"))
    greedy = decoder.generate(ids, mask, max_new_tokens=12, do_sample=False, eos_token_id=special.eos,
                              pad_token_id=special.pad)[:, ids.shape[1]:]
    greedy_text = [tokenizer.decode(t for t in row if t != special.pad) for row in greedy.tolist()]
    assert outputs(subject, 7) != greedy_text
