"""The model in the configurations and forms the parity tests leave out: every bias and a norm
epsilon of its own against transformers, ModernBERT's initialisation, the trainer's form (host-built
target rows) against the packed one, hidden states and `encode`, position ids of one's own, a
batch of one target, the rotary bases changed in place, and the parameter count."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tests.model import varlen_standin  # the name test_device_step imports it by: one registration

from twofold.model import TwofoldModel, preset

from .hf_reference import hf_twin

TOL = 1e-5
SHAPE = dict(local_attention=8, global_attn_every_n_layers=2, num_hidden_layers=4)
BIASED = dict(attention_bias=True, mlp_bias=True, norm_bias=True, classifier_bias=True, decoder_bias=False,
              norm_eps=0.1, tie_word_embeddings=False)  # every bias the other way round from ModernBERT's


def make(causal: bool, **fields) -> TwofoldModel:
    torch.manual_seed(5)
    return TwofoldModel(preset("tiny", causal=causal, **{**SHAPE, **fields})).eval()


def scrambled(model: TwofoldModel) -> TwofoldModel:
    """Every weight, bias and norm drawn at random: a setting that is not read shows."""
    torch.manual_seed(6)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model


def batch(vocab: int):
    ids = torch.randint(0, vocab, (3, 20))  # id 0 included: it is a token like any other
    ids[0, 0] = 0
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    return ids, mask


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_biases_an_own_norm_epsilon_and_an_untied_decoder_match_transformers(causal):
    ours = scrambled(make(causal, **BIASED))
    twin = hf_twin(ours)
    ids, mask = batch(ours.config.vocab_size)
    real = mask.bool()
    with torch.no_grad():
        expected = twin(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        got = ours(ids, attention_mask=mask)
    assert (got.logits[real] - expected.logits[real]).abs().max() <= TOL
    assert (got.hidden_states[real] - expected.hidden_states[-1][real]).abs().max() <= TOL
    assert ours.num_parameters() == twin.num_parameters()
    assert ours.num_parameters(exclude_embeddings=True) == twin.num_parameters(exclude_embeddings=True)


def test_the_parameter_count_counts_tied_weights_once_and_can_leave_out_the_embeddings():
    tied, untied = make(False), make(False, tie_word_embeddings=False)
    embedding = tied.config.vocab_size * tied.config.hidden_size
    assert untied.num_parameters() - tied.num_parameters() == embedding
    assert tied.num_parameters() - tied.num_parameters(exclude_embeddings=True) == embedding
    assert tied.num_parameters() == len(torch.cat([p.flatten() for p in tied.parameters()]))


def test_a_fresh_model_has_modernberts_initialisation():
    model = make(False, **BIASED, initializer_range=0.05)
    std_in, std_out = 0.05, 0.05 / math.sqrt(2 * 4)
    weights = {"model.embeddings.tok_embeddings": std_in, "model.layers.1.attn.Wqkv": std_in,
               "model.layers.1.attn.Wo": std_out, "model.layers.2.mlp.Wi": std_in, "model.layers.2.mlp.Wo": std_out,
               "head.dense": std_out, "decoder": std_out}
    found = dict(model.named_parameters())
    for name, std in weights.items():
        weight = found[f"{name}.weight"]
        assert weight.std().item() == pytest.approx(std * 0.88, rel=0.1), name  # a normal cut at 2 std: 0.88 std
        assert weight.abs().max().item() <= 2 * std + 1e-7, name
    biases = [name for name in found if name.endswith(".bias")]
    assert len(biases) > 10 and all(not found[name].any() for name in biases)
    norms = [name for name in found if "norm" in name and name.endswith(".weight")]
    assert norms and all(bool((found[name] == 1).all()) for name in norms)


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_the_trainers_form_gives_the_packed_forms_loss_and_hidden_states(causal):
    model = scrambled(make(causal))
    ids, mask = batch(model.config.vocab_size)
    lengths = mask.sum(1)
    flat = ids[mask.bool()]
    cu = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    labels = torch.full_like(flat, -100)
    labels[[0, 3, 4, 15, 21]] = flat[[1, 4, 5, 16, 22]]  # a few targets, anywhere
    positions = torch.cat([torch.arange(int(n)) for n in lengths])
    with torch.no_grad():
        packed = model(flat, labels=labels, cu_seqlens=cu, max_seqlen=int(lengths.max()))
        rows = torch.tensor([0, 3, 4, 15, 21, 0, 0])  # padded to a fixed count with ignored rows
        target_labels = torch.cat([labels[rows[:5]], torch.tensor([-100, -100])])
        trainer = model(flat, labels=target_labels, cu_seqlens=cu, max_seqlen=32, position_ids=positions,
                        target_index=rows)
    assert trainer.num_targets.item() == packed.num_targets.item() == 5 and trainer.logits is None
    assert trainer.loss.item() == pytest.approx(packed.loss.item(), abs=1e-5)
    assert torch.allclose(trainer.hidden_states, packed.hidden_states, atol=1e-6)
    one_label = torch.full_like(flat, -100)
    one_label[4] = flat[5]
    with torch.no_grad():
        none = model(flat, labels=torch.full((2,), -100), cu_seqlens=cu, max_seqlen=32, position_ids=positions,
                     target_index=torch.tensor([0, 0]))
        one = model(flat, labels=torch.tensor([int(flat[5]), -100]), cu_seqlens=cu, max_seqlen=32,
                    position_ids=positions, target_index=torch.tensor([4, 0]))
        one_packed = model(flat, labels=one_label, cu_seqlens=cu, max_seqlen=int(lengths.max()))
    assert none.loss.item() == 0.0 and none.num_targets.item() == 0
    assert one.num_targets.item() == 1 and one.loss.item() == pytest.approx(one_packed.loss.item(), abs=1e-5)
    model.attention_kernel = "varlen"  # forced, as on a GPU: one varlen call per layer (a CPU stand-in here)
    before = varlen_standin.calls["forward"]
    with torch.no_grad():
        forced = model(flat, labels=target_labels, cu_seqlens=cu, max_seqlen=20, position_ids=positions,
                       target_index=rows)
    assert varlen_standin.calls["forward"] - before == 4
    assert forced.loss.item() == pytest.approx(packed.loss.item(), abs=1e-5)


def test_a_batch_of_one_target_is_its_cross_entropy_and_hidden_states_come_back_in_the_callers_layout():
    model = scrambled(make(False))
    ids, mask = batch(model.config.vocab_size)
    labels = torch.full_like(ids, -100)
    labels[1, 3] = 7
    with torch.no_grad():
        out = model(ids, attention_mask=mask, labels=labels)
        dense = model(ids, attention_mask=mask)
        flat_out = model(ids[0], labels=labels[0])  # one sequence as a 1-D row
        one_row = model(ids[:1], labels=labels[:1])
    assert out.num_targets.item() == 1
    assert out.loss.item() == pytest.approx(F.cross_entropy(dense.logits[1, 3][None], torch.tensor([7])).item(),
                                            abs=1e-5)
    assert torch.equal(out.hidden_states, dense.hidden_states) and out.hidden_states.shape == (3, 20, 64)
    assert torch.equal(model.encode(ids, attention_mask=mask), dense.hidden_states)
    assert not dense.hidden_states[1, 12:].any() and dense.hidden_states[1, :12].abs().sum() > 0
    assert flat_out.num_targets.item() == one_row.num_targets.item() == 0
    with torch.no_grad():  # a row with padding, given as one 1-D sequence and as a batch of one
        flat_out = model(ids[1], labels=labels[1], attention_mask=mask[1])
        one_row = model(ids[1:2], labels=labels[1:2], attention_mask=mask[1:2])
        unmasked = model(ids[1], labels=labels[1])
    assert flat_out.loss.item() == pytest.approx(one_row.loss.item(), abs=1e-6) and flat_out.num_targets.item() == 1
    assert flat_out.loss.item() != pytest.approx(unmasked.loss.item(), abs=1e-4)  # the padding was left out
    flat, cu = ids[mask.bool()], F.pad(mask.sum(1).cumsum(0), (1, 0)).to(torch.int32)
    with torch.no_grad():
        assert torch.allclose(model.encode(flat, cu_seqlens=cu, max_seqlen=20), dense.hidden_states[mask.bool()],
                              atol=1e-5)


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_packed_tokens_take_the_position_ids_given(causal):
    model = scrambled(make(causal))
    twin = hf_twin(model)
    ids = torch.randint(5, model.config.vocab_size, (17,))
    positions = torch.cat([torch.arange(9), torch.arange(8)])  # rotary distances are relative: a restart shows
    with torch.no_grad():
        given = model(ids, cu_seqlens=torch.tensor([0, 17], dtype=torch.int32), max_seqlen=17, position_ids=positions)
        default = model(ids, cu_seqlens=torch.tensor([0, 17], dtype=torch.int32), max_seqlen=17)
        expected = twin(input_ids=ids[None], position_ids=positions[None]).logits[0]
    assert (given.logits - expected).abs().max().item() <= TOL < 1e-3 < (default.logits - expected).abs().max().item()


def test_new_rotary_bases_act_at_once_and_the_config_follows():
    model = scrambled(make(False))
    ids, mask = batch(model.config.vocab_size)
    model.set_rope_theta(50_000, 2_000)
    assert (model.config.global_rope_theta, model.config.local_rope_theta) == (50_000.0, 2_000.0)
    assert model.model.config == model.config
    fresh = TwofoldModel(model.config).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(ids, attention_mask=mask).logits, fresh(ids, attention_mask=mask).logits)
    for changed in ((60_000, 2_000), (50_000, 3_000)):  # each base reaches its own layers
        other = TwofoldModel(model.config.replace(global_rope_theta=float(changed[0]),
                                                  local_rope_theta=float(changed[1]))).eval()
        other.load_state_dict(model.state_dict())
        with torch.no_grad():
            assert not torch.allclose(model(ids, attention_mask=mask).logits, other(ids, attention_mask=mask).logits)


def test_fill_mask_reads_text_with_the_tokenizer_given_and_a_mask_id_of_ones_own(tokenizer):
    from twofold.model.generate import fill_mask

    model = scrambled(make(False, vocab_size=tokenizer.vocab_size, mask_token_id=tokenizer.special.mask))
    backend = tokenizer.backend  # a `tokenizers.Tokenizer`, as transformers' fast tokenizers hold
    [top] = model.fill_mask("def loads(text): return [MASK]", backend)
    assert len(top) == 5 and top == fill_mask(model, "def loads(text): return [MASK]", backend)[0]
    ids = [9, 7, 11, 7]  # 7 marks the masks here, not the config's mask id
    assert len(model.fill_mask(ids, mask_token_id=7, top_k=3)) == 2
    assert model.fill_mask(ids, mask_token_id=7) == fill_mask(model, ids, top_k=5, mask_token_id=7)
