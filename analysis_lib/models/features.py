"""Frozen vision-encoder features: LLaVA's feature selection, computed once and cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionModel, LlavaForConditionalGeneration

from analysis_lib.core.cache import cached_artifact


def select_features(hidden_states: tuple[torch.Tensor, ...], layer: int | list[int], strategy: str) -> torch.Tensor:
    """LLaVA's selection: one hidden-state layer (a list: those layers concatenated along channels, as
    transformers does); ``default`` drops the CLS token, ``full`` keeps it."""
    if strategy not in ("default", "full"):
        raise ValueError(f"unknown vision_feature_select_strategy {strategy!r}; use 'default' or 'full'")
    features = hidden_states[layer] if isinstance(layer, int) else torch.cat([hidden_states[i] for i in layer], -1)
    return features[:, 1:] if strategy == "default" else features


@torch.no_grad()
def encode_images(
    vision_tower: CLIPVisionModel,
    pixel_values: torch.Tensor,
    layer: int | list[int],
    strategy: str,
    batch_size: int = 512,
) -> torch.Tensor:
    """Selected features of a frozen vision tower for a batch of preprocessed images."""
    vision_tower.eval()
    chunks = []
    for start in range(0, len(pixel_values), batch_size):
        out = vision_tower(pixel_values[start : start + batch_size], output_hidden_states=True)
        chunks.append(select_features(out.hidden_states, layer, strategy))
    return torch.cat(chunks)


def llava_selected_features(model: LlavaForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """The features LLaVA feeds its projector, per its own config."""
    cfg = model.config
    return encode_images(
        model.model.vision_tower, pixel_values, cfg.vision_feature_layer, cfg.vision_feature_select_strategy
    )


def cached_features(spec: dict, compute: callable) -> torch.Tensor:
    """Load features keyed by ``spec`` or compute them with ``compute()`` and cache them atomically."""

    def build(folder: Path) -> None:
        save_file({"features": compute().contiguous()}, str(folder / "features.safetensors"))

    folder, _ = cached_artifact("features", spec, build)
    return load_file(str(folder / "features.safetensors"))["features"]


def pixel_tensor(images: np.ndarray, image_processor) -> torch.Tensor:
    """Preprocess an ``N x H x W x 3`` uint8 array with the model's own image processor."""
    return image_processor(list(images), return_tensors="pt")["pixel_values"]
