"""Tiny models of the paper's real classes: a transformers ``CLIPModel`` and a
``LlavaForConditionalGeneration`` whose vision tower is that CLIP's vision model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from analysis_lib.tokenization import word_tokenizer
from analysis_lib.toyworld import WorldConfig

IMAGE_MEAN = [0.5, 0.5, 0.5]
IMAGE_STD = [0.25, 0.25, 0.25]


@dataclass(frozen=True)
class ClipSize:
    """Architecture of the toy CLIP."""

    width: int = 64
    vision_layers: int = 4
    text_layers: int = 2
    heads: int = 4
    projection_dim: int = 64


@dataclass(frozen=True)
class LlavaSize:
    """Architecture of the toy LLaVA's projector and language model."""

    width: int = 64
    layers: int = 3
    heads: int = 4
    max_positions: int = 256


def asdict(size: ClipSize | LlavaSize) -> dict:
    """Plain-dict form of a size, for cache keys."""
    return dataclasses.asdict(size)


def toy_image_processor(world: WorldConfig) -> CLIPImageProcessor:
    """A CLIP image processor for the toy images: already the right size, so only normalised."""
    side = world.image_size
    return CLIPImageProcessor(
        do_resize=False,
        do_center_crop=False,
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        image_mean=IMAGE_MEAN,
        image_std=IMAGE_STD,
    )


def toy_clip(world: WorldConfig, size: ClipSize, seed: int) -> tuple[CLIPModel, CLIPProcessor]:
    """A randomly initialised tiny ``CLIPModel`` and its processor."""
    tokenizer = word_tokenizer(append_eos=True)
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=size.width,
        intermediate_size=4 * size.width,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.heads,
        max_position_embeddings=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        image_size=world.image_size,
        patch_size=world.cell,
        hidden_size=size.width,
        intermediate_size=4 * size.width,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.heads,
    )
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=size.projection_dim)
    torch.manual_seed(seed)
    model = CLIPModel(config)
    openai_clip_embedding_init(model)
    return model, CLIPProcessor(image_processor=toy_image_processor(world), tokenizer=tokenizer)


def openai_clip_embedding_init(model: CLIPModel) -> None:
    """Initialise the vision class and position embeddings as OpenAI's CLIP does (std = width^-0.5).

    transformers uses std 0.02, which leaves the position signal ~1% of the patch signal in a
    from-scratch model; OpenAI's ViT (whose weights LLaVA reuses) starts them at the patch scale.
    """
    embeddings = model.vision_model.embeddings
    scale = embeddings.embed_dim**-0.5
    with torch.no_grad():
        embeddings.class_embedding.normal_(0, scale)
        embeddings.position_embedding.weight.normal_(0, scale)


def llava_tokenizer() -> PreTrainedTokenizerFast:
    """The toy LLaVA's tokenizer: the toy vocabulary, BOS only, left padding for scoring."""
    tokenizer = word_tokenizer(append_eos=False)
    tokenizer.padding_side = "left"
    return tokenizer


def toy_llava_from_clip(
    clip: CLIPModel, clip_processor: CLIPProcessor, size: LlavaSize, seed: int
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A tiny LLaVA whose vision tower holds ``clip``'s vision weights, frozen; the rest random."""
    tokenizer = llava_tokenizer()
    vision_config = clip.config.vision_config
    grid = vision_config.image_size // vision_config.patch_size
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.width,
        intermediate_size=4 * size.width,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=size.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision_config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=grid * grid,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.vision_model.load_state_dict(clip.vision_model.state_dict())
    model.model.vision_tower.requires_grad_(False)
    processor = LlavaProcessor(
        image_processor=clip_processor.image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    return model, processor
