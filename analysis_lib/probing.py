"""Linear probes on frozen features: what the encoder's tokens hold, whatever a scorer extracts."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPModel

from analysis_lib.features import encode_images
from analysis_lib.toyworld import COLOURS, RELATIONS, Scene

EMPTY = len(COLOURS)


def linear_probe(features: torch.Tensor, labels: torch.Tensor, n_classes: int, seed: int = 0) -> float:
    """Held-out accuracy of a softmax-regression probe (Adam, 300 full-batch steps, 75/25 split)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    cut = int(0.75 * len(labels))
    train, test = order[:cut], order[cut:]
    mean, std = features[train].mean(0), features[train].std(0) + 1e-6
    x = (features - mean) / std
    torch.manual_seed(seed)
    probe = torch.nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2)
    for _ in range(300):
        loss = F.cross_entropy(probe(x[train]), labels[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (probe(x[test]).argmax(-1) == labels[test]).float().mean().item()


def token_labels(scenes: list[Scene], grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per patch token: the colour of the object in its cell (or EMPTY), and its cell index."""
    colours = list(COLOURS)
    colour = torch.full((len(scenes), grid * grid), EMPTY)
    for n, scene in enumerate(scenes):
        for obj, (row, col) in ((scene.first, scene.first_cell), (scene.second, scene.second_cell)):
            colour[n, row * grid + col] = colours.index(obj.colour)
    return colour, torch.arange(grid * grid).repeat(len(scenes), 1)


@torch.no_grad()
def encoder_probes(clip: CLIPModel, pixel_values: torch.Tensor, scenes: list[Scene], layer: int = -2) -> dict:
    """Probe accuracies: per patch token (what LLaVA reads) and from CLIP's pooled embedding (what CLIP scores).

    * ``token colour``: the object's colour (or empty) from each patch token's own feature;
    * ``token cell``: which cell an object token sits in, from its feature alone (no sequence index);
    * ``pooled relation``: the scene's relation from CLIP's projected image embedding.
    """
    grid = int(round(clip.config.vision_config.image_size / clip.config.vision_config.patch_size))
    tokens = encode_images(clip.vision_model, pixel_values, layer, "default")
    colour, cell = token_labels(scenes, grid)
    flat, colour, cell = tokens.reshape(-1, tokens.shape[-1]), colour.reshape(-1), cell.reshape(-1)
    objects = colour != EMPTY
    pooled = clip.get_image_features(pixel_values=pixel_values)
    relation = torch.tensor([RELATIONS.index(s.relation) for s in scenes])
    with torch.enable_grad():
        return {
            "token colour": linear_probe(flat, colour, EMPTY + 1),
            "token cell": linear_probe(flat[objects], cell[objects], grid * grid),
            "pooled relation": linear_probe(pooled, relation, len(RELATIONS)),
        }


def chance_levels(scenes: list[Scene], grid: int) -> dict[str, float]:
    """Majority-class accuracy of each probe's labels."""
    colour, cell = token_labels(scenes, grid)
    objects = colour != EMPTY
    relation = np.array([RELATIONS.index(s.relation) for s in scenes])
    return {
        "token colour": float(np.bincount(colour.reshape(-1).numpy()).max() / colour.numel()),
        "token cell": float(np.bincount(cell[objects].numpy()).max() / int(objects.sum())),
        "pooled relation": float(np.bincount(relation).max() / len(relation)),
    }
