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
    return patch_attributions(score, pixel_values, patch_size)[0]


def patch_attributions(
    score: Callable[[torch.Tensor], torch.Tensor], pixel_values: torch.Tensor, patch_size: int
) -> np.ndarray:
    """``patch_attribution`` of every image of the batch: a ``B x grid x grid`` array (``score`` is per row)."""
    side = pixel_values.shape[-1]
    mask = patch_feature_mask(side, patch_size).expand_as(pixel_values)
    with torch.no_grad():
        attr = FeatureAblation(score).attribute(pixel_values, baselines=0.0, feature_mask=mask)
    grid = side // patch_size
    return attr[:, 0, ::patch_size, ::patch_size].reshape(len(attr), grid, grid).cpu().numpy()


def attribution_shares(attr: np.ndarray, groups: dict[str, list[tuple[int, int]]]) -> dict[str, float]:
    """Share of the total absolute attribution of a ``grid x grid`` map on each group of cells (row, col),
    plus ``elsewhere`` for the cells of no group; the shares sum to 1 (NaN everywhere if the map is all zero)."""
    magnitude = np.abs(np.asarray(attr, dtype=float))
    total = magnitude.sum()
    taken = np.zeros_like(magnitude, dtype=bool)
    shares = {}
    for name, cells in groups.items():
        rows, cols = np.array(cells, dtype=int).reshape(-1, 2).T
        if taken[rows, cols].any():
            raise ValueError(f"group {name!r} shares a cell with an earlier group; groups must be disjoint")
        taken[rows, cols] = True
        shares[name] = magnitude[rows, cols].sum()
    shares["elsewhere"] = magnitude[~taken].sum()
    return {name: float(v / total) if total > 0 else float("nan") for name, v in shares.items()}


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
