"""Tiny models of the paper's real classes: a transformers ``CLIPModel`` and a
``LlavaForConditionalGeneration`` whose vision tower is that CLIP's vision model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from analysis_lib.data.tokenization import word_tokenizer
from analysis_lib.data.toyworld import WorldConfig

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
    position_init: str = "normal"


@dataclass(frozen=True)
class LlavaSize:
    """Architecture of the toy LLaVA's projector and language model."""

    width: int = 64
    layers: int = 3
    heads: int = 4
    max_positions: int = 256


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
    clip_embedding_init(model, size.position_init)
    return model, CLIPProcessor(image_processor=toy_image_processor(world), tokenizer=tokenizer)


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """``grid^2 x dim`` 2-D sine-cosine position codes (half the channels for rows, half for columns)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1).float() * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1)


def clip_embedding_init(model: CLIPModel, position_init: str) -> None:
    """Start the vision class and position embeddings at OpenAI CLIP's scale (std = width^-0.5).

    ``position_init``: ``normal`` (OpenAI's init) or ``sincos`` (2-D sine-cosine codes at that scale).
    transformers' default (std 0.02) leaves position ~1% of the patch signal in a from-scratch
    model; the ViT whose weights LLaVA reuses starts its embeddings at the patch scale.
    """
    embeddings = model.vision_model.embeddings
    width = embeddings.embed_dim
    with torch.no_grad():
        embeddings.class_embedding.normal_(0, width**-0.5)
        if position_init == "normal":
            embeddings.position_embedding.weight.normal_(0, width**-0.5)
        elif position_init == "sincos":
            codes = sincos_2d(int(round((embeddings.num_positions - 1) ** 0.5)), width)
            embeddings.position_embedding.weight[0].zero_()
            embeddings.position_embedding.weight[1:] = codes / codes.std() * width**-0.5
        else:
            raise ValueError(f"unknown position_init {position_init!r}; use 'normal' or 'sincos'")


def llava_tokenizer() -> PreTrainedTokenizerFast:
    """The toy LLaVA's tokenizer: the toy vocabulary, BOS only, left padding for scoring."""
    tokenizer = word_tokenizer(append_eos=False)
    tokenizer.padding_side = "left"
    return tokenizer


def llava_processor(
    image_processor: CLIPImageProcessor, tokenizer: PreTrainedTokenizerFast, patch_size: int
) -> LlavaProcessor:
    """A ``LlavaProcessor`` that expands ``<image>`` to one token per patch (CLS dropped, as LLaVA-1.5)."""
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


def toy_lm_config(size: LlavaSize, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """The toy LLaVA's language model: a small Llama over the toy vocabulary, tied embeddings."""
    return LlamaConfig(
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


def toy_lm(size: LlavaSize, seed: int) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A randomly initialised toy language model (the LLaVA's LM on its own) and its tokenizer."""
    tokenizer = llava_tokenizer()
    torch.manual_seed(seed)
    return LlamaForCausalLM(toy_lm_config(size, tokenizer)), tokenizer


def load_language_model(llava: LlavaForConditionalGeneration, lm: LlamaForCausalLM) -> None:
    """Start ``llava``'s language model (and its tied output head) from a pre-trained toy LM."""
    llava.model.language_model.load_state_dict(lm.model.state_dict())
    llava.lm_head.load_state_dict(lm.lm_head.state_dict())


def toy_llava_from_clip(
    clip: CLIPModel, clip_processor: CLIPProcessor, size: LlavaSize, seed: int
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A tiny LLaVA whose vision tower holds ``clip``'s vision weights, frozen; the rest random."""
    tokenizer = llava_tokenizer()
    vision_config = clip.config.vision_config
    grid = vision_config.image_size // vision_config.patch_size
    text_config = toy_lm_config(size, tokenizer)
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
    return model, llava_processor(clip_processor.image_processor, tokenizer, vision_config.patch_size)


@dataclass(frozen=True)
class LlavaShape:
    """The architecture numbers of a LLaVA-1.5 (CLIP ViT vision tower + Llama), for random models."""

    image_size: int = 336
    patch_size: int = 14
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    text_width: int = 4096
    text_layers: int = 32
    text_heads: int = 32
    text_intermediate: int = 11008
    vocab_size: int = 32064


LLAVA_15_7B = LlavaShape()
TINY_LLAVA_336 = LlavaShape(
    vision_width=32, vision_layers=2, vision_heads=2, text_width=64, text_layers=2, text_heads=4, text_intermediate=128
)
SMALL_LLAVA_336 = LlavaShape(
    vision_width=64, vision_layers=2, vision_heads=4, text_width=256, text_layers=4, text_heads=4, text_intermediate=688
)


def random_llava(
    shape: LlavaShape, seed: int, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A randomly initialised ``LlavaForConditionalGeneration`` of ``shape`` with LLaVA-1.5's image
    processing (336 px, OpenAI CLIP mean/std) and the toy word tokenizer (ids fit any vocabulary)."""
    tokenizer = llava_tokenizer()
    vision = dict(
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        hidden_size=shape.vision_width,
        intermediate_size=4 * shape.vision_width,
        num_hidden_layers=shape.vision_layers,
        num_attention_heads=shape.vision_heads,
        projection_dim=768,
    )
    text = LlamaConfig(
        vocab_size=max(shape.vocab_size, len(tokenizer)),
        hidden_size=shape.text_width,
        intermediate_size=shape.text_intermediate,
        num_hidden_layers=shape.text_layers,
        num_attention_heads=shape.text_heads,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    grid = shape.image_size // shape.patch_size
    config = LlavaConfig(
        vision_config=vision,
        text_config=text.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=grid * grid,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": shape.image_size}, crop_size={"height": shape.image_size, "width": shape.image_size}
    )
    return model.eval(), llava_processor(image_processor, tokenizer, shape.patch_size)
