"""Multi-level features of a ViT (COMM, arXiv 2310.08825): the patch tokens of several encoder layers.

Works for a transformers ``Dinov2Model`` / ``Dinov2WithRegistersModel`` (DINOv2, with or without register
tokens) and a ``CLIPVisionModel`` (the toy CLIP's tower, the SSL toy encoder, CLIP ViT-L/14); the CLS token
and any register tokens are dropped, so every layer gives one token per image patch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import CLIPVisionModel, Dinov2Model, Dinov2WithRegistersModel

VisionEncoder = CLIPVisionModel | Dinov2Model | Dinov2WithRegistersModel


def prefix_tokens(model: VisionEncoder) -> int:
    """How many tokens precede the patch tokens in the encoder's sequence: CLS plus any register tokens."""
    if not isinstance(model, VisionEncoder):
        raise TypeError(
            f"multilevel features need a CLIPVisionModel, Dinov2Model or Dinov2WithRegistersModel, got "
            f"{type(model).__name__}; for a CLIPModel or LLaVA pass its vision tower (model.vision_model / "
            "model.model.vision_tower)."
        )
    return 1 + getattr(model.config, "num_register_tokens", 0)


def check_layers(layers: Sequence[int], n_layers: int) -> list[int]:
    """``layers`` as indices into ``hidden_states`` (0 = embeddings, negative from the end), validated."""
    bad = [layer for layer in layers if not -(n_layers + 1) <= layer <= n_layers]
    if not layers or bad:
        raise ValueError(
            f"layers {list(layers)} invalid for an encoder of {n_layers} layers: give at least one index in "
            f"[{-(n_layers + 1)}, {n_layers}] (0 = embeddings, {n_layers} or -1 = last layer)."
        )
    return [layer % (n_layers + 1) for layer in layers]


@torch.no_grad()
def multilevel_features(model: VisionEncoder, pixel_values: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
    """Per requested layer (indices into ``hidden_states``: 0 = embeddings, -1 = last), the patch tokens
    ``batch x patches x width`` (CLS and register tokens dropped; no final LayerNorm, as LLaVA and COMM read them)."""
    skip = prefix_tokens(model)
    indices = check_layers(layers, model.config.num_hidden_layers)
    hidden = model(pixel_values=pixel_values, output_hidden_states=True).hidden_states
    return [hidden[layer][:, skip:] for layer in indices]
