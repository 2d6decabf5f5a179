"""NegCLIP-style fine-tuning of the toy CLIP (REFERENCE §3): every caption gets a hard negative with its
relation swapped (left of <-> right of, above <-> below); the negatives join the text batch, image->text
cross-entropy runs over the B captions and their K negatives, text->image over the B images only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPProcessor

from analysis_lib.data.toyworld import OPPOSITE, RELATION_PHRASES, Scene, relational_caption
from analysis_lib.training.clip_llava import minibatch_training

SWAPS = {RELATION_PHRASES[r]: RELATION_PHRASES[OPPOSITE[r]] for r in RELATION_PHRASES}
"""Each relation phrase and the one its hard negative puts in its place."""


@dataclass(frozen=True)
class NegClipConfig:
    """Fine-tuning the toy CLIP on captions of the toy LLaVA's training scenes, with or without hard negatives."""

    steps: int = 800  # about 5 epochs of the 20,000 training scenes (the paper: 5 epochs)
    batch_size: int = 128
    lr: float = 1e-3  # half the toy CLIP's pre-training rate
    warmup: int = 80
    weight_decay: float = 0.0
    lock_image: bool = True
    hard_negatives: bool = True


def hard_negative(caption: str) -> str:
    """The caption with its one relation phrase swapped for the opposite one (``ValueError`` if it has none)."""
    padded = f" {caption} "
    found = [phrase for phrase in SWAPS if f" {phrase} " in padded]
    if len(found) != 1:
        raise ValueError(f"caption {caption!r} has {len(found)} relation phrases; a hard negative needs exactly one")
    return padded.replace(f" {found[0]} ", f" {SWAPS[found[0]]} ", 1).strip()


def negclip_loss(
    images: torch.Tensor, texts: torch.Tensor, negatives: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Mean of image->text cross-entropy over the B captions plus the K negatives and text->image cross-entropy
    over the B images (the negatives left out); row i of ``images`` matches row i of ``texts``."""
    images, texts, negatives = (F.normalize(x, dim=-1) for x in (images, texts, negatives))
    target = torch.arange(len(images), device=images.device)
    image_to_text = logit_scale * images @ torch.cat([texts, negatives]).T
    text_to_image = logit_scale * texts @ images.T
    return (F.cross_entropy(image_to_text, target) + F.cross_entropy(text_to_image, target)) / 2


def lock_image_tower(model: CLIPModel) -> None:
    """Freeze the vision tower and its projection (open_clip's ``--lock-image``)."""
    for module in (model.vision_model, model.visual_projection):
        module.requires_grad_(False)


def train_negclip(
    model: CLIPModel,
    processor: CLIPProcessor,
    scenes: list[Scene],
    pixels: torch.Tensor,
    cfg: NegClipConfig,
    seed: int,
    progress: bool = True,
) -> list[float]:
    """Fine-tune ``model`` in place on the scenes' relational captions (the toy LLaVA's describe answers);
    returns the loss curve."""
    if cfg.lock_image:
        lock_image_tower(model)
    device = next(model.parameters()).device

    def batch_loss(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        captions = [relational_caption(scenes[i]) for i in idx]
        negatives = [hard_negative(c) for c in captions] if cfg.hard_negatives else []
        text = processor.tokenizer(captions + negatives, padding=True, return_tensors="pt").to(device)
        text_features = model.get_text_features(**text)
        image_features = model.get_image_features(pixel_values=pixels[idx].to(device))
        n = len(captions)
        return negclip_loss(image_features, text_features[:n], text_features[n:], model.logit_scale.exp())

    return minibatch_training(model, len(scenes), cfg, seed, batch_loss, "NegCLIP", progress)
