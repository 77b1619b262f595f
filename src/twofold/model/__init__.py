"""The model: one transformer body for the encoder and the decoder of a pair."""

from twofold.model.config import PRESETS, ModelConfig, preset
from twofold.model.transformer import IGNORE_INDEX, ModelOutput, TwofoldModel

__all__ = ["IGNORE_INDEX", "PRESETS", "ModelConfig", "ModelOutput", "TwofoldModel", "preset"]
