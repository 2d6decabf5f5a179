"""Layer-wise probes of a real vision encoder on What'sUp Controlled images (chapters 2 and 7 at full scale).

What'sUp Controlled-A/B photographs the same two objects in four relations, so each image carries two labels a
frozen encoder may or may not keep: **the relation** (which of the four) and **the object pair** (what is in it).
Per encoder layer a linear probe (``probing.fit_probe``) reads each label from three views of the tokens:

* ``CLS token``: the token CLIP's pooled embedding is made from;
* ``mean patch token``: every patch token averaged (what survives when position is averaged away);
* ``patch grid``: the patch tokens average-pooled to a ``grid x grid`` map and flattened. Where things are survives;
  flattening all 576 tokens of ViT-L/14-336 would give 590k features for a few hundred images.

The splits keep a probe from memorising images: relation probes train and test on **disjoint object pairs**;
object-pair probes test each pair on one of its relations that their training never showed. Images are padded to a
square with the processor's mean colour first (as LLaVA-1.5 does), so no object is cropped out of its relation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor

from analysis_lib.core.images import load_image
from analysis_lib.data.benchmarks import WhatsUpItem
from analysis_lib.full.registry import UnsupportedModelError, load_scorer, load_vision_encoder
from analysis_lib.models.multilevel_features import prefix_tokens
from analysis_lib.scoring.probing import PROBE_STEPS, fit_probe, majority_accuracy
from analysis_lib.scoring.scorers import ClipScorer, mean_colour, pad_to_square

VIEWS = ("CLS token", "mean patch token", "patch grid")
TARGETS = ("relation", "object pair")
GRID = 4
TEST_SHARE = 0.25  # of the object pairs, for the relation probes


@dataclass(frozen=True)
class ProbeImages:
    """What'sUp images preprocessed for one encoder, with each image's relation and object-pair labels."""

    pixel_values: torch.Tensor
    relation: torch.Tensor
    pair: torch.Tensor
    relations: tuple[str, ...]


def probe_images(items: Sequence[WhatsUpItem], image_processor) -> ProbeImages:
    """The items' images, padded to squares with ``image_processor``'s mean colour and preprocessed by it, and their
    labels (relations and object pairs numbered in sorted order)."""
    relations = tuple(sorted({item.relation for item in items}))
    pairs = sorted({item.obj_pair for item in items})
    if len(pairs) < 2 or len(relations) < 2:
        raise ValueError(
            f"layer probes need What'sUp Controlled items of at least two object pairs and two relations; got "
            f"{len(pairs)} pair(s) and {len(relations)} relation(s) (COCO/GQA-spatial items carry no object pair)"
        )
    fill = mean_colour(image_processor)
    images = [pad_to_square(load_image(item.image_path), fill) for item in items]
    return ProbeImages(
        image_processor(images, return_tensors="pt")["pixel_values"],
        torch.tensor([relations.index(item.relation) for item in items]),
        torch.tensor([pairs.index(item.obj_pair) for item in items]),
        relations,
    )


def token_views(hidden: torch.Tensor, prefix: int, grid: int = GRID) -> dict[str, torch.Tensor]:
    """``VIEWS`` of one layer's ``batch x tokens x width`` hidden states whose first ``prefix`` tokens are CLS (first)
    and any registers, the rest a square map of patches."""
    patches = hidden[:, prefix:].float()
    side = int(round(patches.shape[1] ** 0.5))
    if side * side != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens do not form a square map (prefix tokens: {prefix})")
    square = patches.transpose(1, 2).reshape(len(hidden), -1, side, side)
    pooled = F.adaptive_avg_pool2d(square, min(grid, side)).flatten(1)
    return {"CLS token": hidden[:, 0].float(), "mean patch token": patches.mean(1), "patch grid": pooled}


@torch.no_grad()
def layer_views(
    encoder: torch.nn.Module, pixel_values: torch.Tensor, prefix: int, batch_size: int = 32
) -> list[dict[str, torch.Tensor]]:
    """Per layer (0 = embeddings) the ``VIEWS`` of every image, on the CPU: ``encoder`` is a vision tower that returns
    ``hidden_states`` (a ``CLIPVisionModel``, ``CLIPModel.vision_model``, ``Dinov2Model``)."""
    device, dtype = next(encoder.parameters()).device, next(encoder.parameters()).dtype
    chunks: list[list[dict[str, torch.Tensor]]] = []
    for start in range(0, len(pixel_values), batch_size):
        batch = pixel_values[start : start + batch_size].to(device, dtype)
        hidden = encoder(pixel_values=batch, output_hidden_states=True).hidden_states
        chunks.append([{k: v.cpu() for k, v in token_views(h, prefix).items()} for h in hidden])
    return [{view: torch.cat([c[layer][view] for c in chunks]) for view in VIEWS} for layer in range(len(chunks[0]))]


def relation_split(pair: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean train and test masks that put ``TEST_SHARE`` of the object pairs (at least one) on the test side."""
    pairs = torch.unique(pair)
    order = pairs[torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))]
    test_pairs = order[: max(1, int(round(TEST_SHARE * len(pairs))))]
    test = torch.isin(pair, test_pairs)
    return ~test, test


def pair_split(pair: torch.Tensor, relation: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean train and test masks that test each object pair on one of its relations (drawn with ``seed``) and
    train on its others; a pair photographed in one relation only stays out of both."""
    rng, test = np.random.default_rng(seed), torch.zeros(len(pair), dtype=torch.bool)
    for value in torch.unique(pair):
        own = torch.nonzero(pair == value).flatten()
        kinds = torch.unique(relation[own])
        if len(kinds) < 2:
            continue
        held = kinds[rng.integers(len(kinds))]
        test[own[relation[own] == held]] = True
    has_test = torch.isin(pair, pair[test])
    return has_test & ~test, test


def probe_table(
    views: list[dict[str, torch.Tensor]], images: ProbeImages, seed: int = 0, steps: int = PROBE_STEPS
) -> pd.DataFrame:
    """Linear-probe test accuracy per layer, view and target, beside the majority class and the split sizes."""
    splits = {"relation": (images.relation, relation_split(images.pair, seed)),
              "object pair": (images.pair, pair_split(images.pair, images.relation, seed))}  # fmt: skip
    rows = []
    for layer, by_view in enumerate(views):
        for target, (labels, (train, test)) in splits.items():
            n_classes = int(labels.max()) + 1
            for view, x in by_view.items():
                accuracy = fit_probe(x[train], labels[train], x[test], labels[test], n_classes, "linear", seed, steps)
                rows.append({"layer": layer, "view": view, "target": target, "accuracy": accuracy,
                             "majority class": majority_accuracy(labels[train], labels[test]),
                             "train images": int(train.sum()), "test images": int(test.sum())})  # fmt: skip
    return pd.DataFrame(rows)


def encoder_probe_table(
    encoder: torch.nn.Module, image_processor, items: Sequence[WhatsUpItem], prefix: int, seed: int = 0,
    steps: int = PROBE_STEPS, batch_size: int = 32,
) -> pd.DataFrame:  # fmt: skip
    """``probe_table`` of one frozen encoder on What'sUp Controlled ``items`` (see the module docstring)."""
    images = probe_images(items, image_processor)
    return probe_table(layer_views(encoder, images.pixel_values, prefix, batch_size), images, seed, steps)


@dataclass(frozen=True)
class ProbedEncoder:
    """A frozen vision tower to probe, the processor its images go through and how many tokens precede its patches."""

    name: str
    encoder: torch.nn.Module
    image_processor: object
    prefix: int


def clip_encoder(model: str, device: str = "auto", allow_download: bool = False) -> ProbedEncoder:
    """The vision tower of a transformers CLIP (registered name, hub id or folder) in float32."""
    scorer = load_scorer(model, device=device, dtype="float32", allow_download=allow_download)
    if not isinstance(scorer, ClipScorer):
        raise UnsupportedModelError(
            f"layer probes read a transformers CLIP's hidden states, and {model!r} loads as {type(scorer).__name__}: "
            "use clip-l14-336 (openai/clip-vit-large-patch14-336, the same weights as open_clip's ViT-L-14-336/openai) "
            "or a folder saved by transformers"
        )
    return ProbedEncoder(model, scorer.model.vision_model, scorer.processor.image_processor, 1)


def dinov2_encoder(model: str, device: str = "auto", allow_download: bool = False) -> ProbedEncoder:
    """A DINOv2 encoder (registered name, hub id or folder) in float32, with the image processor saved beside it."""
    encoder = load_vision_encoder(model, device=device, dtype="float32", allow_download=allow_download)
    try:
        processor = AutoImageProcessor.from_pretrained(encoder.name_or_path)
    except OSError as error:
        raise FileNotFoundError(
            f"{encoder.name_or_path} holds no image processor (preprocessor_config.json): save the model's processor "
            f"there (e.g. AutoImageProcessor.from_pretrained('facebook/dinov2-large').save_pretrained(folder))"
        ) from error
    return ProbedEncoder(model, encoder, processor, prefix_tokens(encoder))


def whatsup_layer_probes(
    encoders: Sequence[ProbedEncoder], benchmarks: dict[str, list], seed: int = 0, steps: int = PROBE_STEPS,
    batch_size: int = 32,
) -> pd.DataFrame:  # fmt: skip
    """``encoder_probe_table`` of every encoder on every What'sUp Controlled subset of ``benchmarks`` (``encoder`` and
    ``benchmark`` columns)."""
    subsets = {name: items for name, items in benchmarks.items() if name.startswith("Controlled")}
    if not subsets:
        raise ValueError(
            f"no What'sUp Controlled subset among the benchmarks ({', '.join(benchmarks)}): layer probes need "
            "Controlled-A or -B (controlled_images_dataset.json / controlled_clevr_dataset.json and their images)"
        )
    tables = [encoder_probe_table(e.encoder, e.image_processor, items, e.prefix, seed, steps, batch_size)
              .assign(encoder=e.name, benchmark=name)
              for e in encoders for name, items in subsets.items()]  # fmt: skip
    return pd.concat(tables, ignore_index=True)


def probe_pivot(table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per encoder, benchmark, target and layer (rows) and view (columns), with the majority class."""
    index = ["encoder", "benchmark", "target", "layer"]
    pivot = table.pivot_table(index=index, columns="view", values="accuracy", sort=False)
    return pivot.join(table.groupby(index, sort=False)["majority class"].first())


def probe_records(table: pd.DataFrame) -> pd.DataFrame:
    """A ``whatsup_layer_probes`` table in the tidy metrics format: model = the frozen encoder, condition = the view
    and layer, metric = the target probed, one seed (the probes' split), n_units = the test images."""
    return pd.DataFrame({
        "model": table.encoder + " (frozen)",
        "condition": [f"linear probe on {v}, layer {n}" for v, n in zip(table.view, table.layer)],
        "benchmark": table.benchmark, "metric": table.target + " probe", "seed": 0, "value": table.accuracy,
        "ci_low": np.nan, "ci_high": np.nan, "n_units": table["test images"],
    })  # fmt: skip
