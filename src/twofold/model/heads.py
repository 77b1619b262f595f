"""Pooling, embeddings for retrieval, and the sequence-classification head.

Pooling works on packed hidden states with `cu_seqlens`, so it serves padded and packed
inputs alike. `cls` is the first token of each sequence, `last` the last real token (the
decoder's choice, as in transformers' ModernBertDecoderForSequenceClassification), `mean`
the average over real tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twofold.errors import TwofoldError
from twofold.model.config import ModelConfig
from twofold.model.transformer import Body, ModelOutput, PredictionHead, init_weights, pack_inputs

POOLINGS = ("cls", "mean", "last")


def pool(hidden: torch.Tensor, cu_seqlens: torch.Tensor, pooling: str) -> torch.Tensor:
    """[N, H] packed hidden states -> [S, H], one vector per sequence."""
    cu = cu_seqlens.to(torch.int64)
    if pooling == "cls":
        return hidden[cu[:-1]]
    if pooling == "last":
        return hidden[cu[1:] - 1]
    if pooling == "mean":
        lengths = cu.diff()
        seq_ids = torch.repeat_interleave(torch.arange(lengths.numel(), device=hidden.device), lengths)
        sums = hidden.new_zeros(lengths.numel(), hidden.shape[-1]).index_add_(0, seq_ids, hidden)
        return sums / lengths.clamp(min=1).unsqueeze(1).to(hidden.dtype)
    raise TwofoldError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")


@torch.no_grad()
def embed(model: nn.Module, input_ids, attention_mask=None, cu_seqlens=None, max_seqlen=None,
          pooling: str = "mean", normalize: bool = False) -> torch.Tensor:
    """Sentence embeddings [S, H] from a model's final hidden states (no head).

    Encoders usually pool with `mean` (or `cls`); decoders with `last` (or `mean`).
    """
    inputs = pack_inputs(model.config, input_ids, attention_mask, None, cu_seqlens, max_seqlen)
    hidden = model.model(inputs.input_ids, inputs.layout)
    vectors = pool(hidden, inputs.layout.cu_seqlens, pooling)
    return F.normalize(vectors, dim=-1) if normalize else vectors


class SequenceClassifier(nn.Module):
    """body -> pool -> head (dense, GELU, norm) -> dropout -> classifier.

    Names match transformers' `ModernBertForSequenceClassification` and
    `ModernBertDecoderForSequenceClassification`, so weights move both ways.
    """

    def __init__(self, config: ModelConfig, num_labels: int, pooling: str | None = None):
        super().__init__()
        if num_labels < 1:
            raise TwofoldError(f"num_labels must be at least 1, got {num_labels}")
        self.config = config
        self.num_labels = num_labels
        self.pooling = pooling or ("last" if config.causal else config.classifier_pooling)
        if self.pooling not in POOLINGS:
            raise TwofoldError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.model = Body(config)
        self.head = PredictionHead(config)
        self.drop = nn.Dropout(config.classifier_dropout)
        # transformers gives the encoder's classifier a bias and the decoder's `classifier_bias`.
        self.classifier = nn.Linear(config.hidden_size, num_labels,
                                    bias=config.classifier_bias if config.causal else True)
        init_weights(self, config)
        std = config.hidden_size ** -0.5
        cutoff = config.initializer_cutoff_factor
        nn.init.trunc_normal_(self.classifier.weight, std=std, a=-cutoff * std, b=cutoff * std)
        if self.classifier.bias is not None:
            nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids, attention_mask=None, labels=None, cu_seqlens=None, max_seqlen=None) -> ModelOutput:
        inputs = pack_inputs(self.config, input_ids, attention_mask, None, cu_seqlens, max_seqlen)
        hidden = self.model(inputs.input_ids, inputs.layout)
        pooled = pool(hidden, inputs.layout.cu_seqlens, self.pooling)
        logits = self.classifier(self.drop(self.head(pooled)))
        loss = None
        if labels is not None:
            loss = F.mse_loss(logits.squeeze(-1), labels.float()) if self.num_labels == 1 \
                else F.cross_entropy(logits.float(), labels)
        return ModelOutput(loss, logits, inputs.restore(hidden))
