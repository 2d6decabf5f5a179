"""Patch attribution with captum: how much each image patch moves a scorer's decision."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from captum.attr import FeatureAblation


def patch_feature_mask(image_size: int, patch_size: int) -> torch.Tensor:
    """``1 x 1 x H x W`` map from pixel to its patch index (row-major), shared over channels."""
    grid = image_size // patch_size
    ids = torch.arange(grid * grid).view(grid, grid)
    return ids.repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)[None, None]


def patch_attribution(
    score: Callable[[torch.Tensor], torch.Tensor], pixel_values: torch.Tensor, patch_size: int
) -> np.ndarray:
    """Score drop when each patch is replaced by the processor's mean colour (0 after normalising).

    ``score`` maps ``B x 3 x H x W`` pixel values to ``B`` scores; returns a ``grid x grid`` array.
    """
    side = pixel_values.shape[-1]
    mask = patch_feature_mask(side, patch_size).expand_as(pixel_values)
    with torch.no_grad():
        attr = FeatureAblation(score).attribute(pixel_values, baselines=0.0, feature_mask=mask)
    grid = side // patch_size
    return attr[0, 0, ::patch_size, ::patch_size].reshape(grid, grid).cpu().numpy()


def clip_margin_fn(scorer, gold: str, foil: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """CLIP's cosine margin between a gold and a foil caption, as a function of pixel values."""
    text = scorer.text_embeddings([gold, foil])
    model = scorer.model

    def margin(pixel_values: torch.Tensor) -> torch.Tensor:
        image = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixel_values), dim=-1)
        sims = image @ text.T
        return sims[:, 0] - sims[:, 1]

    return margin


def vqa_margin_fn(scorer, gold: str, foil: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """VQAScore margin between a gold and a foil caption, as a function of pixel values."""

    def margin(pixel_values: torch.Tensor) -> torch.Tensor:
        n = len(pixel_values)
        return scorer.score_batch(pixel_values, [gold] * n) - scorer.score_batch(pixel_values, [foil] * n)

    return margin
