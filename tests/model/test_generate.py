"""Generation with a sliding-window KV cache, and fill-mask."""

import pytest
import torch

from twofold.errors import TwofoldError
from twofold.model import TwofoldModel, preset
from twofold.model.generate import sample_next

from .hf_reference import hf_twin


def hf_generator(model: TwofoldModel):
    twin = hf_twin(model, "sdpa")
    twin.generation_config.eos_token_id = None  # run the full length, eos included
    return twin


def decoder(**shape) -> TwofoldModel:
    config = preset("tiny", causal=True, local_attention=8, global_attn_every_n_layers=2, num_hidden_layers=3, **shape)
    return TwofoldModel(config).eval()


def test_greedy_32_tokens_equal_transformers_generate():
    model = decoder()
    twin = hf_generator(model)
    prompt = torch.randint(5, model.config.vocab_size, (1, 7))
    expected = twin.generate(prompt, max_new_tokens=32, do_sample=False)
    got = model.generate(prompt, max_new_tokens=32, eos_token_id=-1)
    assert got.shape == (1, 39)  # far past the 4-key window of the local layers
    assert torch.equal(got, expected)


def sharpened(model: TwofoldModel) -> TwofoldModel:
    """Weights scaled up so the logits are far from uniform and the argmax moves step to step."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.mul_(6.0)
    return model


def step_logits(model: TwofoldModel, prompt, mask, new_tokens):
    """Our generated ids and the logits of each step, read off the vocabulary projection."""
    seen = []
    hook = model.decoder.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    try:
        ids = model.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens, eos_token_id=-1)
    finally:
        hook.remove()
    return ids, torch.stack(seen)


@pytest.mark.parametrize("padded", [False, True], ids=["one-row", "left-padded-batch"])
def test_every_step_s_logits_equal_transformers_with_a_cache_past_the_window(padded):
    torch.manual_seed(4)
    model = sharpened(decoder())
    twin = hf_generator(model)
    prompt = torch.randint(5, model.config.vocab_size, (2 if padded else 1, 7))
    mask = torch.ones_like(prompt)
    if padded:
        mask[0, :3] = 0
        prompt = prompt.masked_fill(mask == 0, model.config.pad_token_id)
    expected = twin.generate(prompt, attention_mask=mask, max_new_tokens=24, do_sample=False,
                             output_logits=True, return_dict_in_generate=True)
    ids, logits = step_logits(model, prompt, mask, 24)
    assert torch.equal(ids, expected.sequences)
    assert len(set(ids[-1, 7:].tolist())) > 8  # not one token repeated: the comparison can tell
    want = torch.stack(expected.logits)
    assert logits.shape == want.shape == (24, prompt.shape[0], model.config.vocab_size)
    torch.testing.assert_close(logits, want, rtol=0, atol=1e-5)


def test_batch_left_and_right_padding_give_the_same_continuations():
    model = decoder()
    twin = hf_generator(model)
    ids = torch.randint(5, model.config.vocab_size, (2, 9))
    left_mask = torch.ones_like(ids)
    left_mask[0, :4] = 0
    left = ids.masked_fill(left_mask == 0, model.config.pad_token_id)
    expected = twin.generate(left, attention_mask=left_mask, max_new_tokens=20, do_sample=False)
    got_left = model.generate(left, attention_mask=left_mask, max_new_tokens=20, eos_token_id=-1)
    right = torch.full_like(ids, model.config.pad_token_id)
    right_mask = torch.zeros_like(left_mask)
    right[0, :5], right_mask[0, :5] = left[0, 4:], 1
    right[1], right_mask[1] = left[1], 1
    got_right = model.generate(right, attention_mask=right_mask, max_new_tokens=20, eos_token_id=-1)
    assert torch.equal(got_left[:, 9:], expected[:, 9:])
    assert torch.equal(got_right, got_left)


def test_generation_equals_full_recompute_each_step():
    """The cache (trimmed to the window) gives what a fresh forward over everything gives."""
    model = decoder()
    prompt = torch.randint(5, model.config.vocab_size, (1, 5))
    generated = model.generate(prompt, max_new_tokens=25, eos_token_id=-1)
    with torch.no_grad():
        logits = model(generated[:, :-1]).logits[0]
    assert torch.equal(logits[4:].argmax(-1), generated[0, 5:])


def test_eos_stops_a_row_and_pads_it():
    model = decoder()
    prompt = torch.randint(5, model.config.vocab_size, (2, 6))
    free = model.generate(prompt, max_new_tokens=12, eos_token_id=-1)
    eos = int(free[0, 8])  # the third generated token of row 0 becomes "eos"
    stopped = model.generate(prompt, max_new_tokens=12, eos_token_id=eos, pad_token_id=2)
    row = stopped[0, 6:].tolist()
    first = row.index(eos)
    assert all(t == 2 for t in row[first + 1:])


def test_sampling_respects_top_k_and_top_p():
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0, -1.0]])
    gen = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, True, 1.0, 2, 1.0, gen)) for _ in range(200)}
    assert draws == {0, 1}
    draws = {int(sample_next(logits, True, 1.0, 0, 0.5, gen)) for _ in range(200)}
    assert draws == {0}  # p(token 0) = 0.71 already covers top_p 0.5
    assert int(sample_next(logits, False, 1.0, 0, 1.0, None)) == 0


def test_sampling_is_reproducible_with_a_generator():
    model = decoder()
    prompt = torch.randint(5, model.config.vocab_size, (1, 4))
    runs = [model.generate(prompt, max_new_tokens=10, do_sample=True, temperature=0.8, top_p=0.9,
                           generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_fill_mask_ranks_the_argmax_first():
    model = TwofoldModel(preset("tiny")).eval()
    ids = torch.randint(5, model.config.vocab_size, (12,))
    ids[4] = model.config.mask_token_id
    result = model.fill_mask(ids, top_k=3)
    with torch.no_grad():
        best = int(model(ids[None]).logits[0, 4].argmax())
    assert len(result) == 1 and len(result[0]) == 3
    assert result[0][0]["token_id"] == best
    assert result[0][0]["score"] >= result[0][1]["score"] >= result[0][2]["score"]


def test_wrong_member_and_missing_mask_are_clear_errors():
    with pytest.raises(TwofoldError, match="decoder"):
        TwofoldModel(preset("tiny")).generate(torch.tensor([[5, 6]]))
    with pytest.raises(TwofoldError, match="encoder"):
        decoder().fill_mask(torch.tensor([5, 6]))
    with pytest.raises(TwofoldError, match="no mask token"):
        TwofoldModel(preset("tiny")).fill_mask(torch.tensor([5, 6]))


def test_temperature_sharpens_and_top_k_one_is_greedy():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0]])
    gen = torch.Generator().manual_seed(1)
    cold = {int(sample_next(logits, True, 0.05, 0, 1.0, gen)) for _ in range(300)}
    hot = {int(sample_next(logits, True, 20.0, 0, 1.0, gen)) for _ in range(300)}
    assert cold == {0} and hot == {0, 1, 2, 3, 4}  # T=1 would give token 0 only 65% of the time
    assert {int(sample_next(logits, True, 1.0, 1, 1.0, gen)) for _ in range(300)} == {0}
    assert {int(sample_next(logits, True, 1.0, -1, 1.0, gen)) for _ in range(300)} == {0, 1, 2, 3, 4}  # off


def test_top_k_three_and_top_p_keep_exactly_the_tokens_they_should():
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0, -1.0]])  # p ≈ 0.71, 0.26, 0.013, 0.005, 0.002
    gen = torch.Generator().manual_seed(2)
    draws = lambda top_k, top_p, row=logits: {int(sample_next(row, True, 1.0, top_k, top_p, gen)) for _ in range(400)}
    assert draws(3, 1.0, torch.tensor([[5.0, 5.0, 5.0, 0.0, 0.0]])) == {0, 1, 2}
    assert draws(0, 0.8) == {0, 1}  # 0.71 before token 1 is short of 0.8; 0.97 before token 2 is not
    assert draws(0, 0.5, torch.tensor([[0.0, 0.0]])) == {0}  # the mass before token 1 reaches 0.5 exactly
