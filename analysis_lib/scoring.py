"""The two scorers on one frozen encoder: CLIP cosine similarity and LLaVA VQAScore.

Both take a list of images and a list of ``(image_index, text)`` pairs and return one score per
pair, so every benchmark is scored the same way for both models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm
from transformers import CLIPModel, CLIPProcessor, LlavaForConditionalGeneration, LlavaProcessor

from analysis_lib.prompts import PromptFormat
from analysis_lib.training import expand_image_tokens

ImageLike = Image.Image | np.ndarray
Pairs = Sequence[tuple[int, str]]


def as_pil(image: ImageLike) -> Image.Image:
    """A PIL RGB image from a PIL image or an ``H x W x 3`` uint8 array."""
    return image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(image)


def pad_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Pad to a square canvas of colour ``fill``, centred (LLaVA's ``image_aspect_ratio='pad'``)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def _device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter."""
    return next(model.parameters()).device


class ClipScorer:
    """Cosine similarity of CLIP's projected, L2-normalised image and text embeddings."""

    name = "CLIP cosine"

    def __init__(self, model: CLIPModel, processor: CLIPProcessor, batch_size: int = 256) -> None:
        self.model, self.processor, self.batch_size = model.eval(), processor, batch_size

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Normalised image embeddings, one row per image."""
        rows = []
        for start in range(0, len(images), self.batch_size):
            batch = [as_pil(im) for im in images[start : start + self.batch_size]]
            pixels = self.processor.image_processor(batch, return_tensors="pt")["pixel_values"]
            rows.append(self.model.get_image_features(pixel_values=pixels.to(_device(self.model))))
        return F.normalize(torch.cat(rows).float(), dim=-1)

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings, one row per text."""
        rows = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.processor.tokenizer(
                list(texts[start : start + self.batch_size]), padding=True, truncation=True, return_tensors="pt"
            ).to(_device(self.model))
            rows.append(self.model.get_text_features(**enc))
        return F.normalize(torch.cat(rows).float(), dim=-1)

    def score_pairs(self, images: Sequence[ImageLike], pairs: Pairs) -> np.ndarray:
        """Cosine similarity for each ``(image_index, text)`` pair."""
        texts = sorted({t for _, t in pairs})
        row = {t: i for i, t in enumerate(texts)}
        img, txt = self.image_embeddings(images), self.text_embeddings(texts)
        index = torch.tensor([i for i, _ in pairs])
        columns = torch.tensor([row[t] for _, t in pairs])
        return (img[index] * txt[columns]).sum(-1).cpu().numpy()


class VQAScorer:
    """VQAScore: exp(-mean cross-entropy) of the answer tokens (``Yes`` + end token) after the question."""

    name = "LLaVA VQAScore"

    def __init__(
        self,
        model: LlavaForConditionalGeneration,
        processor: LlavaProcessor,
        prompt_format: PromptFormat,
        batch_size: int = 128,
        progress: bool = False,
    ) -> None:
        self.model, self.processor, self.format = model.eval(), processor, prompt_format
        self.batch_size, self.progress = batch_size, progress
        tokenizer = processor.tokenizer
        self.answer_ids = tokenizer(prompt_format.answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]

    def pixel_values(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Preprocessed images (padded to square with the processor's mean colour if the format says so)."""
        pil = [as_pil(im) for im in images]
        if self.format.pad_to_square:
            fill = tuple(int(round(255 * m)) for m in self.processor.image_processor.image_mean)
            pil = [pad_to_square(im, fill) for im in pil]
        return self.processor.image_processor(pil, return_tensors="pt")["pixel_values"]

    def input_batch(self, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        """Left-padded prompt ids followed by the answer ids, with matching mask and positions."""
        tokenizer = self.processor.tokenizer
        prompts = [expand_image_tokens(self.format.vqa_prompt(c), self.model.config.image_seq_length) for c in captions]
        enc = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
        answer = torch.tensor(self.answer_ids).expand(len(captions), -1)
        ids = torch.cat([enc["input_ids"], answer], dim=1)
        mask = torch.cat([enc["attention_mask"], torch.ones_like(answer)], dim=1)
        return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}

    @torch.no_grad()
    def score_batch(self, pixel_values: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """VQAScore of row i of ``pixel_values`` with caption i."""
        device = _device(self.model)
        batch = {k: v.to(device) for k, v in self.input_batch(captions).items()}
        dtype = self.model.get_input_embeddings().weight.dtype
        logits = self.model(**batch, pixel_values=pixel_values.to(device, dtype)).logits
        n = len(self.answer_ids)
        predicted = logits[:, -n - 1 : -1].float()
        target = batch["input_ids"][:, -n:]
        ce = F.cross_entropy(predicted.reshape(-1, predicted.shape[-1]), target.reshape(-1), reduction="none")
        return torch.exp(-ce.view(len(captions), n).mean(-1)).cpu()

    def score_pairs(self, images: Sequence[ImageLike], pairs: Pairs) -> np.ndarray:
        """VQAScore for each ``(image_index, text)`` pair."""
        pixels = self.pixel_values(images)
        scores = []
        starts = range(0, len(pairs), self.batch_size)
        for start in tqdm(starts, desc="VQAScore", disable=not self.progress):
            chunk = pairs[start : start + self.batch_size]
            index = torch.tensor([i for i, _ in chunk])
            scores.append(self.score_batch(pixels[index], [t for _, t in chunk]))
        return torch.cat(scores).numpy()


def score_options(scorer, images: Sequence[ImageLike], options: Sequence[Sequence[str]]) -> np.ndarray:
    """``N x K`` scores of each image against its own K candidate texts."""
    pairs = [(i, text) for i, texts in enumerate(options) for text in texts]
    return scorer.score_pairs(images, pairs).reshape(len(options), -1)
