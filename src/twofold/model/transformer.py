"""One ModernBERT-style transformer body for both members of the pair.

Module and parameter names mirror transformers' `ModernBertForMaskedLM` (`model.layers.{i}.attn.Wqkv`,
`head.dense`, `decoder` …), so the encoder's state dict *is* the Hugging Face one and the
decoder's differs only by the renames in `twofold.hf`. `config.causal` is the only switch.

The body always runs on packed tokens; padded `(input_ids, attention_mask)` batches are
unpadded on the way in and re-padded on the way out, so both layouts share one code path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from twofold.errors import TwofoldError
from twofold.model.attention import PackedLayout, VarlenLayout
from twofold.model.config import LOCAL, ModelConfig
from twofold.model.loss import IGNORE_INDEX, linear_cross_entropy
from twofold.model.rope import apply_rope, inverse_frequencies, rope_cos_sin


def layer_norm(config: ModelConfig) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)


class Embeddings(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.norm = layer_norm(config)
        self.drop = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.tok_embeddings(input_ids)))


class MLP(nn.Module):
    """GeGLU: Wi projects to 2 * intermediate; Wo(gelu(input) * gate)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.drop = nn.Dropout(config.mlp_dropout)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input, gate = self.Wi(x).chunk(2, dim=-1)
        return self.Wo(self.drop(F.gelu(input) * gate))


class Attention(nn.Module):
    """Fused Wqkv (rows: all Q heads | all K | all V), RoPE, masked attention, Wo."""

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.local = config.layer_types[layer_idx] == LOCAL
        self.dropout = config.attention_dropout
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.Wo = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.out_drop = nn.Dropout(config.output_dropout)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Rotated q, k and v of shape (*tokens, heads, head_dim)."""
        qkv = self.Wqkv(x).view(*x.shape[:-1], 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(dim=-3)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x: torch.Tensor, rope: dict, layout) -> torch.Tensor:
        q, k, v = self.qkv(x, *rope[self.local])
        dropout = self.dropout if self.training else 0.0
        return self.out_drop(self.Wo(layout.attend(q, k, v, self.layer_idx, self.local, dropout)))


class Layer(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        # Layer 0 skips attn_norm: the embedding norm already normalised its input.
        self.attn_norm = nn.Identity() if layer_idx == 0 else layer_norm(config)
        self.attn = Attention(config, layer_idx)
        self.mlp_norm = layer_norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, rope: dict, layout) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope, layout)
        return x + self.mlp(self.mlp_norm(x))


class Body(nn.Module):
    """Embeddings -> layers -> final_norm, on packed tokens (HF: `ModernBertModel`)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config, i) for i in range(config.num_hidden_layers))
        self.final_norm = layer_norm(config)
        self.register_buffer("global_inv_freq", inverse_frequencies(config.global_rope_theta, config.head_dim),
                             persistent=False)
        self.register_buffer("local_inv_freq", inverse_frequencies(config.local_rope_theta, config.head_dim),
                             persistent=False)

    @torch.no_grad()
    def set_rope_theta(self, global_theta: float, local_theta: float) -> None:
        """New rotary bases, e.g. at a context-extension phase; the buffers change in place, so
        wrappers (DDP, FSDP2, torch.compile) that hold them see the change."""
        self.config = self.config.replace(global_rope_theta=float(global_theta), local_rope_theta=float(local_theta))
        for buffer, theta in ((self.global_inv_freq, global_theta), (self.local_inv_freq, local_theta)):
            buffer.copy_(inverse_frequencies(theta, self.config.head_dim).to(buffer.device))

    def rope(self, position_ids: torch.Tensor) -> dict:
        """cos/sin per layer kind, keyed by `local`."""
        return {False: rope_cos_sin(position_ids, self.global_inv_freq),
                True: rope_cos_sin(position_ids, self.local_inv_freq)}

    def forward(self, input_ids: torch.Tensor, layout) -> torch.Tensor:
        """`layout` has `position_ids` and `attend(q, k, v, layer_idx, local, dropout)`:
        a `PackedLayout` for training/scoring, a KV cache for generation."""
        x = self.embeddings(input_ids)
        rope = self.rope(layout.position_ids)
        for layer in self.layers:
            x = layer(x, rope, layout)
        return self.final_norm(x)


class PredictionHead(nn.Module):
    """dense -> GELU -> norm (HF: `ModernBertPredictionHead`; `lm_head` in the decoder)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.norm = layer_norm(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(x)))


@dataclass
class ModelOutput:
    """`logits` are [N_targets, V] when labels were given (sparse prediction), else per token."""

    loss: torch.Tensor | None
    logits: torch.Tensor | None
    hidden_states: torch.Tensor
    num_targets: torch.Tensor | None = None


@dataclass
class Inputs:
    """A batch in packed form, and how to put per-token outputs back into the caller's layout."""

    input_ids: torch.Tensor  # [N]
    layout: PackedLayout
    labels: torch.Tensor | None  # [N]
    padded_shape: tuple[int, int] | None = None
    token_index: torch.Tensor | None = None  # flat positions of real tokens in the padded grid

    def restore(self, per_token: torch.Tensor) -> torch.Tensor:
        """[N, ...] -> the caller's layout ([B, T, ...] zero-filled at padding, or [N, ...])."""
        if self.padded_shape is None:
            return per_token
        batch, length = self.padded_shape
        grid = per_token.new_zeros(batch * length, *per_token.shape[1:])
        grid = grid.index_copy(0, self.token_index, per_token)
        return grid.view(batch, length, *per_token.shape[1:])


def pack_inputs(config: ModelConfig, input_ids, attention_mask=None, labels=None, cu_seqlens=None,
                max_seqlen=None, position_ids=None) -> Inputs:
    """Bring a padded or packed batch into packed form, checking it on the way."""
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise TwofoldError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= config.vocab_size):
        bad = int(input_ids.max()) if int(input_ids.max()) >= config.vocab_size else int(input_ids.min())
        raise TwofoldError(
            f"token id {bad} is outside the model's vocabulary [0, {config.vocab_size}); "
            "is the tokenizer the one this model was trained with?"
        )
    radius = config.window_radius
    if cu_seqlens is not None:
        if input_ids.dim() != 1:
            raise TwofoldError("packed input_ids must be 1-D when cu_seqlens is given, "
                               f"got shape {tuple(input_ids.shape)}")
        layout = PackedLayout.build(cu_seqlens, max_seqlen, input_ids.numel(), config.causal, radius, position_ids)
        return Inputs(input_ids, layout, labels)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
        labels = labels[None] if labels is not None else None
        attention_mask = attention_mask[None] if attention_mask is not None else None
    if input_ids.dim() != 2:
        raise TwofoldError(f"padded input_ids must be [batch, length], got shape {tuple(input_ids.shape)}")
    batch, length = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
    elif attention_mask.shape != input_ids.shape:
        raise TwofoldError(f"attention_mask shape {tuple(attention_mask.shape)} "
                           f"!= input_ids shape {tuple(input_ids.shape)}")
    valid = attention_mask.bool()
    token_index = valid.flatten().nonzero().squeeze(1)
    lengths = valid.sum(1)
    cu = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    layout = PackedLayout.build(cu, None, int(token_index.numel()), config.causal, radius)
    flat_labels = labels.flatten()[token_index] if labels is not None else None
    return Inputs(input_ids.flatten()[token_index], layout, flat_labels, (batch, length), token_index)


class TwofoldModel(nn.Module):
    """Encoder (masked LM) or decoder (causal LM), chosen by `config.causal`.

    `forward(input_ids, attention_mask=None, labels=None, cu_seqlens=None, max_seqlen=None,
    position_ids=None)`: padded `[B, T]` with `attention_mask`, or packed 1-D tokens with
    `cu_seqlens`. `labels[i]` is the target *at* position i (-100: none): the data pipeline
    shifts causal labels, so both objectives share one loss. With labels, the head runs
    only on labelled positions (sparse prediction); the loss equals the dense one.

    The trainer's form adds `target_index`: packed tokens whose layout (`cu_seqlens`,
    `position_ids`, `max_seqlen` a bound) and target rows were built on the host, with
    `labels[j]` the target of token `target_index[j]` (-100 for padding rows). Nothing is checked
    or read back on the device, no logits are returned, and the loss is a chunked
    linear cross-entropy (`twofold.model.loss`), so the step can be compiled with fixed shapes.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = Body(config)
        self.head = PredictionHead(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=config.decoder_bias)
        if config.tie_word_embeddings:
            self.decoder.weight = self.model.embeddings.tok_embeddings.weight
        # The trainer's form: None picks a varlen kernel per call where one serves
        # (`attention.fast_kernel`); "varlen"/"flash" forces one (e.g. a stand-in under test).
        self.attention_kernel: str | None = None
        self.reset_parameters()

    @property
    def causal(self) -> bool:
        return self.config.causal

    def set_rope_theta(self, global_theta: float, local_theta: float) -> None:
        """Rotary bases for global and sliding-window layers from now on; `config` follows, so a
        checkpoint or export written afterwards carries them."""
        self.model.set_rope_theta(global_theta, local_theta)
        self.config = self.model.config

    def forward(self, input_ids, attention_mask=None, labels=None, cu_seqlens=None, max_seqlen=None,
                position_ids=None, target_index=None) -> ModelOutput:
        if target_index is not None:
            return self._targets_loss(input_ids, labels, cu_seqlens, max_seqlen, position_ids, target_index)
        inputs = pack_inputs(self.config, input_ids, attention_mask, labels, cu_seqlens, max_seqlen, position_ids)
        hidden = self.model(inputs.input_ids, inputs.layout)
        if inputs.labels is None:
            logits = self.decoder(self.head(hidden))
            return ModelOutput(None, inputs.restore(logits), inputs.restore(hidden))
        targets = inputs.labels != IGNORE_INDEX
        logits = self.decoder(self.head(hidden[targets]))
        num_targets = targets.sum()
        loss = F.cross_entropy(logits.float(), inputs.labels[targets], reduction="sum") / num_targets.clamp(min=1)
        return ModelOutput(loss, logits, inputs.restore(hidden), num_targets)

    def _targets_loss(self, input_ids, labels, cu_seqlens, max_seqlen, position_ids, target_index) -> ModelOutput:
        layout = VarlenLayout(cu_seqlens, max_seqlen, position_ids, self.config.causal, self.config.window_radius,
                              kernel=self.attention_kernel)
        hidden = self.model(input_ids, layout)
        rows = self.head(hidden.index_select(0, target_index))
        num_targets = (labels != IGNORE_INDEX).sum()
        loss = linear_cross_entropy(rows, self.decoder.weight, self.decoder.bias, labels)
        return ModelOutput(loss / num_targets.clamp(min=1), None, hidden, num_targets)

    def encode(self, input_ids, attention_mask=None, cu_seqlens=None, max_seqlen=None) -> torch.Tensor:
        """Final hidden states (no head), in the caller's layout."""
        inputs = pack_inputs(self.config, input_ids, attention_mask, None, cu_seqlens, max_seqlen)
        return inputs.restore(self.model(inputs.input_ids, inputs.layout))

    def generate(self, input_ids, attention_mask=None, **kwargs) -> torch.Tensor:
        """Decoder generation; see `twofold.model.generate.generate`."""
        from twofold.model.generate import generate

        return generate(self, input_ids, attention_mask, **kwargs)

    def fill_mask(self, text_or_ids, tokenizer=None, top_k: int = 5,
                  mask_token_id: int | None = None) -> list[list[dict]]:
        """Encoder mask filling; see `twofold.model.generate.fill_mask`."""
        from twofold.model.generate import fill_mask

        return fill_mask(self, text_or_ids, tokenizer, top_k, mask_token_id)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        total = sum(p.numel() for p in self.parameters())  # tied weights counted once
        if exclude_embeddings:
            total -= self.model.embeddings.tok_embeddings.weight.numel()
        return total

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Truncated-normal init of ModernBERT: std 0.02 in, 0.02/sqrt(2L) out; norms 1, biases 0."""
        init_weights(self, self.config)


def init_weights(module: nn.Module, config: ModelConfig) -> None:
    std_in = config.initializer_range
    std_out = config.initializer_range / math.sqrt(2.0 * config.num_hidden_layers)
    cutoff = config.initializer_cutoff_factor

    def normal(linear: nn.Module, std: float) -> None:
        nn.init.trunc_normal_(linear.weight, mean=0.0, std=std, a=-cutoff * std, b=cutoff * std)
        if getattr(linear, "bias", None) is not None:
            nn.init.zeros_(linear.bias)

    for sub in module.modules():
        if isinstance(sub, Embeddings):
            normal(sub.tok_embeddings, std_in)
        elif isinstance(sub, Attention):
            normal(sub.Wqkv, std_in)
            normal(sub.Wo, std_out)
        elif isinstance(sub, MLP):
            normal(sub.Wi, std_in)
            normal(sub.Wo, std_out)
        elif isinstance(sub, PredictionHead):
            normal(sub.dense, std_out)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
    decoder = getattr(module, "decoder", None)
    if isinstance(decoder, nn.Linear):
        if not config.tie_word_embeddings:
            normal(decoder, std_out)
        elif decoder.bias is not None:
            nn.init.zeros_(decoder.bias)
