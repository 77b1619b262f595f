"""Framing texts as training did, embedding them, and masking held-out windows."""

import numpy as np
import pytest
import torch

from twofold.data.tokenizer import for_member
from twofold.eval.tasks.lm import held_out_windows, mask_windows
from twofold.eval.text import _fit, batches_by_length, embed_texts, frame, pad
from twofold.model.heads import embed


def test_frame_adds_specials_and_cuts_the_longest_part_first(tokenizer):
    cls, sep = tokenizer.special.cls, tokenizer.special.sep
    single, pair = frame(tokenizer, ["def f(x): return x", ("short", "word " * 50)], max_length=16)
    assert single[0] == cls and single[-1] == sep and cls not in single[1:-1]
    assert len(pair) == 16 and pair.count(sep) == 2
    first = tokenizer.encode_batch(["short"])[0]
    assert pair[1:1 + len(first)] == first  # the short part is kept whole


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_frame_gives_the_exported_tokenizers_ids_and_cuts_to_exactly_the_length(tokenizer, causal):
    member = for_member(tokenizer.backend, tokenizer.special, causal)
    texts = ["def f(x): return x", ("import os", "os.path.join(a, b)"), ("x", "y", "z")]
    framed = frame(tokenizer, texts, max_length=64, causal=causal)
    assert framed[0] == member.encode(texts[0]).ids
    assert framed[1] == member.encode(*texts[1]).ids  # what transformers' tokenizer(a, b) gives
    cls, sep = tokenizer.special.cls, tokenizer.special.sep
    x, y, z = (tokenizer.encode_batch([t])[0] for t in texts[2])
    assert framed[2] == [cls, *x, sep, *y, sep, *z] + ([] if causal else [sep])
    whole = len(framed[1])
    assert frame(tokenizer, texts[1:2], whole, causal) == framed[1:2]  # exactly the length: nothing cut
    cut = frame(tokenizer, texts[1:2], whole - 1, causal)[0]
    assert len(cut) == whole - 1 and cut.count(sep) == (1 if causal else 2)
    assert frame(tokenizer, ["hello"], 1 if causal else 2, causal) == [[cls] if causal else [cls, sep]]
    assert frame(tokenizer, [], 16, causal) == []


def test_fit_keeps_the_largest_cap_that_fits():
    """Each part keeps min(its length, cap) for the largest cap whose total fits the room."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        pieces = [list(range(n)) for n in rng.integers(0, 12, rng.integers(1, 5))]
        room = int(rng.integers(0, 40))
        cap = max(c for c in range(0, 13) if sum(min(len(p), c) for p in pieces) <= room)
        assert _fit(pieces, room) == [p[:cap] for p in pieces], (pieces, room)


def test_batches_by_length_go_shortest_first_in_batches_of_the_size_given():
    sequences = [[0] * n for n in (5, 1, 3, 2, 4)]
    assert list(batches_by_length(sequences, 2)) == [[1, 3], [2, 4], [0]]
    ids, mask = pad([[7, 8, 9], [4]], pad_id=0)
    assert ids.tolist() == [[7, 8, 9], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long


def test_embed_texts_pools_like_the_model_heads(tokenizer, encoder):
    texts = ["import os", "def read(path):\n    return open(path).read()", "x"]
    vectors = embed_texts(encoder, tokenizer, texts, ("mean", "cls"), max_length=32, batch_size=2)
    for i, ids in enumerate(frame(tokenizer, texts, 32)):
        for pooling in ("mean", "cls"):
            expected = embed(encoder, torch.tensor([ids]), pooling=pooling)[0]
            assert torch.allclose(vectors[pooling][i], expected, atol=1e-5), pooling
        with torch.no_grad():  # cls: the final hidden state at [CLS], the first position
            hidden = encoder.encode(torch.tensor([ids]))[0]
        assert torch.allclose(vectors["cls"][i], hidden[0], atol=1e-5)
        assert torch.allclose(vectors["mean"][i], hidden.mean(0), atol=1e-5)


def test_mask_windows_masks_regular_tokens_at_the_rate_and_by_seed(tokenizer):
    windows = held_out_windows(tokenizer, max_length=64, budget=3000, seed=0)
    assert sum(map(len, windows)) <= 3000 and max(map(len, windows)) <= 64
    inputs, labels = mask_windows(windows, tokenizer, rate=0.15, seed=0)
    masked = [(w[i], x[i]) for w, x, y in zip(windows, inputs, labels) for i in range(len(w)) if y[i] != -100]
    regular = sum(t not in tokenizer.special.all() for w in windows for t in w)
    assert all(x == tokenizer.special.mask and t not in tokenizer.special.all() for t, x in masked)
    assert 0.10 < len(masked) / regular < 0.20
    assert mask_windows(windows, tokenizer, 0.15, seed=0) == (inputs, labels)
    assert mask_windows(windows, tokenizer, 0.15, seed=1) != (inputs, labels)
