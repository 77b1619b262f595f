"""Decoder generation with a KV cache that respects the sliding window, and encoder fill-mask.

Batches are left-aligned first (right-padded prompts are moved to the right edge), so that
every row appends its next token in the same column. Positions count real tokens only, and
sliding-window layers keep only the keys the window can still reach.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from twofold.errors import TwofoldError
from twofold.model.attention import allowed


class KVCache:
    """Per-layer keys/values [B, heads, T, head_dim] plus each key's position and validity.

    Plays the `layout` role of `Body.forward`: it has `position_ids` and `attend`.
    """

    def __init__(self, num_layers: int, radius: int):
        self.radius = radius
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.key_pos: list[torch.Tensor | None] = [None] * num_layers
        self.key_valid: list[torch.Tensor | None] = [None] * num_layers
        self.position_ids: torch.Tensor | None = None  # [B, t] of the tokens being fed
        self.valid: torch.Tensor | None = None

    def feed(self, position_ids: torch.Tensor, valid: torch.Tensor) -> KVCache:
        self.position_ids, self.valid = position_ids, valid
        return self

    def attend(self, q, k, v, layer_idx: int, local: bool, dropout: float) -> torch.Tensor:
        # q/k/v: [B, t, heads, head_dim] -> [B, heads, t, head_dim]
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        if self.keys[layer_idx] is None:
            keys, values, key_pos, key_valid = k, v, self.position_ids, self.valid
        else:
            keys = torch.cat([self.keys[layer_idx], k], dim=2)
            values = torch.cat([self.values[layer_idx], v], dim=2)
            key_pos = torch.cat([self.key_pos[layer_idx], self.position_ids], dim=1)
            key_valid = torch.cat([self.key_valid[layer_idx], self.valid], dim=1)
        radius = self.radius if local else None
        ok = allowed(self.position_ids[:, :, None], key_pos[:, None, :], True, radius) & key_valid[:, None, :]
        ok = ok | ~self.valid[:, :, None]  # padding queries: any row, never NaN
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=ok[:, None])
        if local:
            # Columns advance together, so keys older than radius - 1 columns are out of
            # every row's window from the next step on.
            keep = max(self.radius - 1, 0)
            keys, values = keys[:, :, -keep:], values[:, :, -keep:]
            key_pos, key_valid = key_pos[:, -keep:], key_valid[:, -keep:]
        self.keys[layer_idx], self.values[layer_idx] = keys, values
        self.key_pos[layer_idx], self.key_valid[layer_idx] = key_pos, key_valid
        return out.transpose(1, 2).reshape(*q.shape[:1], q.shape[2], -1)


def left_align(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's real tokens to the right edge, keeping their order."""
    order = torch.argsort(attention_mask.to(torch.int8), dim=1, stable=True)
    return input_ids.gather(1, order), attention_mask.gather(1, order)


def sample_next(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int, top_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """One token id per row from last-position logits [B, V]."""
    if not do_sample:
        return logits.argmax(dim=-1)
    logits = logits.float() / max(temperature, 1e-6)
    if top_k and top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the mass before it already reaches top_p (the best one always stays)
        drop = probs.cumsum(dim=-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)


@torch.no_grad()
def generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
             max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, eos_token_id: int | None = None,
             pad_token_id: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue each prompt; returns [B, T + generated], left-padded, prompts included.

    Rows that emit `eos_token_id` stop (filled with `pad_token_id`); generation ends when all
    rows stopped or after `max_new_tokens`.
    """
    config = model.config
    if not config.causal:
        raise TwofoldError("generate needs a decoder (causal) model; use fill_mask for an encoder")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    eos = config.eos_token_id if eos_token_id is None else eos_token_id
    pad = config.pad_token_id if pad_token_id is None else pad_token_id
    pad = 0 if pad is None else pad  # finished rows need some filler; the mask hides it anyway
    ids, mask = left_align(input_ids, attention_mask.to(torch.long))
    body = model.model
    cache = KVCache(config.num_hidden_layers, config.window_radius)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    step_ids, step_valid = ids, mask.bool()
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    out = [ids]
    for _ in range(max_new_tokens):
        hidden = body(step_ids, cache.feed(positions, step_valid))
        logits = model.decoder(model.head(hidden[:, -1]))
        token = sample_next(logits, do_sample, temperature, top_k, top_p, generator)
        token = torch.where(finished, torch.full_like(token, pad), token)
        out.append(token[:, None])
        if eos is not None:
            finished = finished | (token == eos)
        if bool(finished.all()):
            break
        positions = positions[:, -1:] + 1
        step_ids, step_valid = token[:, None], torch.ones_like(token[:, None], dtype=torch.bool)
    return torch.cat(out, dim=1)


@torch.no_grad()
def fill_mask(model, text_or_ids, tokenizer=None, top_k: int = 5,
              mask_token_id: int | None = None) -> list[list[dict]]:
    """Top-k predictions for each mask token: one list of {token_id, token, score} per mask.

    `mask_token_id` defaults to the config's (a checkpoint may have none inside its vocabulary).
    """
    config = model.config
    if config.causal:
        raise TwofoldError("fill_mask needs an encoder (masked LM); use generate for a decoder")
    mask_token_id = config.mask_token_id if mask_token_id is None else mask_token_id
    if mask_token_id is None:
        raise TwofoldError("the model's config has no mask token id inside its vocabulary; "
                           "pass mask_token_id= (the tokenizer's [MASK] id)")
    if isinstance(text_or_ids, str):
        if tokenizer is None:
            raise TwofoldError("fill_mask on text needs a tokenizer (pass tokenizer=, or token ids)")
        ids = torch.tensor(tokenizer.encode(text_or_ids).ids)
    else:
        ids = torch.as_tensor(text_or_ids, dtype=torch.long).flatten()
    where = (ids == mask_token_id).nonzero().squeeze(1)
    if where.numel() == 0:
        raise TwofoldError(f"no mask token (id {mask_token_id}) in the input; put [MASK] where a word should go")
    logits = model(ids[None]).logits[0, where]
    scores, top = logits.softmax(dim=-1).topk(min(top_k, logits.shape[-1]), dim=-1)
    results = []
    for row_scores, row_ids in zip(scores.tolist(), top.tolist()):
        results.append([
            {"token_id": i, "token": tokenizer.id_to_token(i) if tokenizer else None, "score": s}
            for i, s in zip(row_ids, row_scores)
        ])
    return results
