"""Build the transformers twin of a twofold model (same weights), for parity tests."""

from __future__ import annotations

import transformers

from twofold.hf import config_to_hf, to_hf_names
from twofold.model import ModelConfig, TwofoldModel
from twofold.model.heads import SequenceClassifier


def hf_config(config: ModelConfig, num_labels: int | None = None):
    data = config_to_hf(config, num_labels)
    data.pop("architectures")
    cls = transformers.ModernBertDecoderConfig if config.causal else transformers.ModernBertConfig
    return cls(**{k: v for k, v in data.items() if k != "model_type"})


def hf_twin(model: TwofoldModel | SequenceClassifier, attn_implementation: str = "eager"):
    config = model.config
    if isinstance(model, SequenceClassifier):
        hf_cfg = hf_config(config, model.num_labels)
        if not config.causal:
            hf_cfg.classifier_pooling = model.pooling
        cls = (transformers.ModernBertDecoderForSequenceClassification if config.causal
               else transformers.ModernBertForSequenceClassification)
    else:
        hf_cfg = hf_config(config)
        cls = transformers.ModernBertDecoderForCausalLM if config.causal else transformers.ModernBertForMaskedLM
    hf_cfg._attn_implementation = attn_implementation
    twin = cls(hf_cfg).eval()
    state = to_hf_names(model.state_dict(), config.causal)
    if config.tie_word_embeddings:
        state.pop("decoder.weight", None)
    missing, unexpected = twin.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "decoder.weight"]
    assert not missing and not unexpected, (missing, unexpected)
    return twin
