"""The scorers on one frozen encoder: CLIP cosine similarity (transformers or open_clip) and LLaVA VQAScore.

All take a list of images and a list of ``(image_index, text)`` pairs and return one score per
pair, so every benchmark is scored the same way for both models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from transformers import (
    CLIPModel,
    CLIPProcessor,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerBase,
)

from analysis_lib.core.progress import progress_bar
from analysis_lib.models.conversations import answer_logprob
from analysis_lib.models.features import llava_selected_features
from analysis_lib.models.prompts import PromptFormat

ImageLike = Image.Image | np.ndarray
Pairs = Sequence[tuple[int, str]]
# Part of every full-scale score log's key: raise it with any change here (or to the prompts and score functions
# these scorers are called through) that changes a score, so that logs of the old scores are not reused.
PROTOCOL_VERSION = 3


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


def mean_colour(image_processor) -> tuple[int, ...]:
    """The processor's normalisation mean as a 0-255 colour, truncated as LLaVA's and t2v_metrics' ``expand2square``
    fill ``tuple(int(x*255) for x in image_mean)`` is: CLIP's mean gives (122, 116, 104), not (123, 117, 104)."""
    return tuple(int(m * 255) for m in image_processor.image_mean)


def fixed_input_side(model: torch.nn.Module, image_processor) -> int | None:
    """The side images must already have when ``image_processor`` does not resize them (the toy models), else None."""
    return None if image_processor.do_resize else model.config.vision_config.image_size


def fit_to_input(images: list[Image.Image], side: int | None, fill: tuple[int, ...]) -> list[Image.Image]:
    """Images letterboxed to ``side`` x ``side`` (scaled to fit, centred, padded with ``fill``); unchanged if
    ``side`` is None (the processor resizes them itself)."""
    if side is None:
        return images
    return [
        image if image.size == (side, side) else ImageOps.pad(image, (side, side), Image.Resampling.BICUBIC, fill)
        for image in images
    ]


def _device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter."""
    return next(model.parameters()).device


class CosineScorer:
    """Cosine similarity of L2-normalised image and text embeddings; subclasses embed one batch."""

    name = "CLIP cosine"
    batch_size: int
    input_side: int | None = None  # the size every image is letterboxed to, where the scorer does so

    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        """Unnormalised embeddings of one batch of PIL images."""
        raise NotImplementedError

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Unnormalised embeddings of one batch of texts."""
        raise NotImplementedError

    def _normalised(self, items: Sequence, embed: Callable[[list], torch.Tensor]) -> torch.Tensor:
        """``embed`` over ``batch_size`` chunks of ``items``, concatenated and L2-normalised in fp32."""
        rows = [embed(list(items[start : start + self.batch_size])) for start in range(0, len(items), self.batch_size)]
        return F.normalize(torch.cat(rows).float(), dim=-1)

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Normalised image embeddings, one row per image."""
        return self._normalised(images, lambda batch: self.embed_images([as_pil(im) for im in batch]))

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings, one row per text."""
        return self._normalised(texts, self.embed_texts)

    def score_pairs(self, images: Sequence[ImageLike], pairs: Pairs) -> np.ndarray:
        """Cosine similarity for each ``(image_index, text)`` pair."""
        texts = sorted({t for _, t in pairs})
        row = {t: i for i, t in enumerate(texts)}
        img, txt = self.image_embeddings(images), self.text_embeddings(texts)
        index = torch.tensor([i for i, _ in pairs])
        columns = torch.tensor([row[t] for _, t in pairs])
        return (img[index] * txt[columns]).sum(-1).cpu().numpy()


class ClipScorer(CosineScorer):
    """Cosine similarity of a transformers ``CLIPModel``'s projected, L2-normalised embeddings."""

    def __init__(self, model: CLIPModel, processor: CLIPProcessor, batch_size: int = 256) -> None:
        self.model, self.processor, self.batch_size = model.eval(), processor, batch_size
        self.input_side = fixed_input_side(model, processor.image_processor)

    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        """Projected image features of one batch (letterboxed first if the processor does not resize)."""
        images = fit_to_input(images, self.input_side, mean_colour(self.processor.image_processor))
        pixels = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return self.model.get_image_features(pixel_values=pixels.to(_device(self.model)))

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Projected text features of one batch."""
        enc = self.processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        return self.model.get_text_features(**enc.to(_device(self.model)))


class OpenClipScorer(CosineScorer):
    """Cosine similarity of an open_clip model's L2-normalised embeddings (CLIP, SigLIP, EVA-CLIP, ...)."""

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        batch_size: int = 256,
    ) -> None:
        self.model, self.preprocess, self.tokenizer, self.batch_size = model.eval(), preprocess, tokenizer, batch_size

    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        """``encode_image`` of one batch, preprocessed by open_clip's eval transform."""
        weight = next(self.model.parameters())
        pixels = torch.stack([self.preprocess(im) for im in images]).to(weight.device, weight.dtype)
        return self.model.encode_image(pixels)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """``encode_text`` of one batch, tokenized by the model's open_clip tokenizer."""
        return self.model.encode_text(self.tokenizer(texts).to(_device(self.model)))


class VQAScorer:
    """VQAScore: exp(-mean cross-entropy) of the answer tokens (``Yes`` + end token) after the question.

    With ``prefix_cache`` (the default) the image and the prompt text shared by all captions run
    through the model once per image; every caption's continuation is then scored from that KV cache
    in one batch. ``prefix_cache=False`` is the reference: one full forward pass per (image, caption).
    """

    name = "LLaVA VQAScore"

    def __init__(
        self,
        model: LlavaForConditionalGeneration,
        processor: LlavaProcessor,
        prompt_format: PromptFormat,
        batch_size: int = 128,
        progress: bool = False,
        prefix_cache: bool = True,
    ) -> None:
        self.model, self.processor, self.format = model.eval(), processor, prompt_format
        self.batch_size, self.progress, self.prefix_cache = batch_size, progress, prefix_cache
        tokenizer = processor.tokenizer
        self.answer = prompt_format.answer_text(tokenizer.eos_token)
        self.answer_ids = tokenizer(self.answer, add_special_tokens=False)["input_ids"]
        self.input_side = fixed_input_side(model, processor.image_processor)

    def pixel_values(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Preprocessed images (padded to square with the processor's mean colour if the format says so;
        letterboxed to the input size if the processor does not resize)."""
        pil = [as_pil(im) for im in images]
        if self.format.pad_to_square:
            fill = mean_colour(self.processor.image_processor)
            pil = [pad_to_square(im, fill) for im in pil]
        pil = fit_to_input(pil, self.input_side, mean_colour(self.processor.image_processor))
        return self.processor.image_processor(pil, return_tensors="pt")["pixel_values"]

    def sequences(self, captions: Sequence[str]) -> list[list[int]]:
        """Token ids of prompt + ``Yes</s>`` per caption, tokenized around ``<image>`` as t2v_metrics' LLaVA does
        (``image_chunk_ids``), with the model's ``image_seq_length`` image tokens in place of ``<image>``."""
        config, tokenizer = self.model.config, self.processor.tokenizer
        texts = [self.format.vqa_prompt(c) + self.answer for c in captions]
        ids = image_chunk_ids(tokenizer, texts, config.image_token_id, config.image_seq_length)
        n = len(self.answer_ids)
        for text, row in zip(texts, ids):
            if row[-n:] != self.answer_ids:
                raise ValueError(f"the answer {self.answer!r} does not tokenize to the same ids at the end of {text!r}")
        return ids

    def input_batch(self, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        """Left-padded prompt + answer ids, with matching mask and positions (the reference path)."""
        ids, mask = pad_token_ids(self.sequences(captions), self.processor.tokenizer.pad_token_id, "left")
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        }

    def _answer_scores(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """exp(-mean CE) from ``R x n x V`` logits predicting the ``R x n`` answer ids."""
        ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
        return torch.exp(-ce.view(targets.shape).mean(-1)).cpu()

    @torch.no_grad()
    def score_batch(self, pixel_values: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """VQAScore of row i of ``pixel_values`` with caption i, one full forward pass per row."""
        device = _device(self.model)
        batch = {k: v.to(device) for k, v in self.input_batch(captions).items()}
        n = len(self.answer_ids)
        logits = self.model(**batch, pixel_values=pixel_values.to(device, self._dtype), logits_to_keep=n + 1).logits
        return self._answer_scores(logits[:, :-1], batch["input_ids"][:, -n:])

    @property
    def _dtype(self) -> torch.dtype:
        """The model's floating dtype (pixels are cast to it)."""
        return self.model.get_input_embeddings().weight.dtype

    @torch.no_grad()
    def score_shared_prefix(
        self, pixel_values: torch.Tensor, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], rows: torch.Tensor
    ) -> torch.Tensor:
        """Scores of ``prefix + suffixes[r]`` with image ``rows[r]``: the prefix runs once per image.

        ``pixel_values`` holds one row per image; each suffix ends with the answer ids.
        """
        device, n = _device(self.model), len(self.answer_ids)
        prefix_ids = torch.tensor([list(prefix)] * len(pixel_values), device=device)
        pixels = pixel_values.to(device, self._dtype)
        cache = self.model.model(input_ids=prefix_ids, pixel_values=pixels, use_cache=True).past_key_values
        cache.batch_select_indices(rows.to(device))
        ids, mask = pad_token_ids(suffixes, self.processor.tokenizer.pad_token_id, "right")
        ids, mask = ids.to(device), mask.to(device)
        full_mask = torch.cat([torch.ones(len(ids), len(prefix), dtype=mask.dtype, device=device), mask], dim=1)
        positions = (len(prefix) + torch.arange(ids.shape[1], device=device)).expand_as(ids)
        hidden = self.model.model(
            input_ids=ids, attention_mask=full_mask, position_ids=positions, past_key_values=cache, use_cache=False
        ).last_hidden_state
        where = mask.sum(-1, keepdim=True) + torch.arange(-n - 1, -1, device=device)  # these predict the answer
        predicted = self.model.lm_head(hidden.gather(1, where[..., None].expand(-1, -1, hidden.shape[-1])))
        return self._answer_scores(predicted, ids.gather(1, where + 1))

    def score_pairs(self, images: Sequence[ImageLike], pairs: Pairs) -> np.ndarray:
        """VQAScore for each ``(image_index, text)`` pair."""
        return self._score_pairs_cached(images, pairs) if self.prefix_cache else self._score_pairs_each(images, pairs)

    def _score_pairs_each(self, images: Sequence[ImageLike], pairs: Pairs) -> np.ndarray:
        """``score_pairs`` the reference way: one full forward pass per pair, ``batch_size`` pairs at a time."""
        pixels = self.pixel_values(images)
        scores = []
        starts = range(0, len(pairs), self.batch_size)
        for start in progress_bar(starts, desc="VQAScore", disable=not self.progress):
            chunk = pairs[start : start + self.batch_size]
            index = torch.tensor([i for i, _ in chunk])
            scores.append(self.score_batch(pixels[index], [t for _, t in chunk]))
        return torch.cat(scores).numpy()

    def _score_pairs_cached(self, images: Sequence[ImageLike], pairs: Pairs) -> np.ndarray:
        """``score_pairs`` through the shared-prefix cache, about ``batch_size`` captions per forward pass."""
        sequences = self.sequences([t for _, t in pairs])
        shared = shared_prefix_length(sequences, keep=len(self.answer_ids) + 1)
        if shared == 0:  # nothing in common to cache
            return self._score_pairs_each(images, pairs)
        by_image: dict[int, list[int]] = {}
        for position, (image, _) in enumerate(pairs):
            by_image.setdefault(image, []).append(position)
        scores = np.empty(len(pairs), dtype=np.float64)
        progress = progress_bar(total=len(pairs), desc="VQAScore (prefix cache)", disable=not self.progress)
        for chunk in chunk_images(by_image, self.batch_size):
            positions = [p for image in chunk for p in by_image[image]]
            rows = torch.tensor([k for k, image in enumerate(chunk) for _ in by_image[image]])
            pixels = self.pixel_values([images[i] for i in chunk])
            suffixes = [sequences[p][shared:] for p in positions]
            scores[positions] = self.score_shared_prefix(pixels, sequences[0][:shared], suffixes, rows).numpy()
            progress.update(len(positions))
        progress.close()
        return scores


class CaptionLikelihoodScorer(VQAScorer):
    """The caption's own likelihood: mean log-probability of its tokens and the end token as the answer of
    the image turn, after ``question`` (empty: no question, the image turn is followed by the caption)."""

    name = "LLaVA caption likelihood"

    def __init__(
        self,
        model: LlavaForConditionalGeneration,
        processor: LlavaProcessor,
        prompt_format: PromptFormat,
        question: str = "",
        batch_size: int = 128,
    ) -> None:
        super().__init__(model, processor, prompt_format, batch_size, prefix_cache=False)
        self.question = question

    @torch.no_grad()
    def score_batch(self, pixel_values: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """Mean log-probability of caption i (and the end token) given image i, laid out as in training."""
        features = llava_selected_features(self.model, pixel_values.to(_device(self.model), self._dtype))
        conversations = [[(self.question, caption)] for caption in captions]
        return answer_logprob(self.model, self.processor.tokenizer, self.format, conversations, features).cpu()


IMAGE_PLACEHOLDER = "<image>"


def image_chunk_ids(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], image_token_id: int, n_image: int
) -> list[list[int]]:
    """Each text's ids as LLaVA's ``tokenizer_image_token`` (used by t2v_metrics) builds them: the pieces between
    ``<image>`` placeholders tokenized one by one with the tokenizer's special tokens, the first piece's BOS kept and
    the first token of every later piece dropped, ``n_image`` image ids where each placeholder was.

    Tokenizing the whole text in one call can differ: a sentencepiece tokenizer that prefixes every call's text with
    a space (Llama's ``legacy`` behaviour, ``Metaspace`` with ``prepend_scheme="always"``) puts a ``▁`` token after
    the image here, which the one-call path lacks when it prefixes only the text's start (``prepend_scheme="first"``);
    measured on a tiny tokenizer of each kind in ``test_scoring``. The toy models' word-level tokenizer gives the
    same ids either way.
    """
    pieces = [text.split(IMAGE_PLACEHOLDER) for text in texts]
    flat = [piece for split in pieces for piece in split if piece]
    encoded = iter(tokenizer(flat)["input_ids"] if flat else [])
    rows = []
    for split in pieces:
        chunks = [next(encoded) if piece else [tokenizer.bos_token_id] for piece in split]
        offset = 1 if chunks[0] and chunks[0][0] == tokenizer.bos_token_id else 0
        row = list(chunks[0])
        for chunk in chunks[1:]:
            row += [image_token_id] * n_image + chunk[offset:]
        rows.append(row)
    return rows


def pad_token_ids(sequences: Sequence[Sequence[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Already tokenized sequences padded on ``side`` (``left`` or ``right``) to one length: ids and attention mask.

    (A fast tokenizer's ``pad`` does the same but warns that tokenizing and padding in one call is faster;
    here the ids are checked between the two.)
    """
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        where = slice(length - len(seq), length) if side == "left" else slice(0, len(seq))
        ids[row, where], mask[row, where] = torch.tensor(list(seq), dtype=torch.long), 1
    return ids, mask


def shared_prefix_length(sequences: Sequence[Sequence[int]], keep: int) -> int:
    """Length of the token prefix common to all sequences, leaving at least ``keep`` tokens in each."""
    shortest = min(len(s) for s in sequences)
    length = 0
    while length < shortest - keep and all(s[length] == sequences[0][length] for s in sequences):
        length += 1
    return length


def chunk_images(by_image: dict[int, list[int]], max_rows: int) -> list[list[int]]:
    """Group images so that each group has at most ``max_rows`` captions (at least one image each)."""
    chunks: list[list[int]] = [[]]
    rows = 0
    for image, positions in by_image.items():
        if chunks[-1] and rows + len(positions) > max_rows:
            chunks.append([])
            rows = 0
        chunks[-1].append(image)
        rows += len(positions)
    return chunks


def score_options(scorer, images: Sequence[ImageLike], options: Sequence[Sequence[str]]) -> np.ndarray:
    """``N x K`` scores of each image against its own K candidate texts."""
    pairs = [(i, text) for i, texts in enumerate(options) for text in texts]
    return scorer.score_pairs(images, pairs).reshape(len(options), -1)
