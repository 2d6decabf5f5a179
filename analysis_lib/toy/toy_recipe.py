"""The book's toy recipe: the chapter LLaVA's setup (chapter 1), its variants that later chapters start from, and the
same setup with other image tokens (chapter 2's token variants, read by chapters 3-5)."""

from __future__ import annotations

import dataclasses

from analysis_lib.models.comm_merge import VisionSource
from analysis_lib.models.image_tokens import ImageTokens
from analysis_lib.toy.toy_runs import smoke_curriculum
from analysis_lib.toy.toy_setup import ToySetup
from analysis_lib.training.clip_llava import (
    GROUNDED_CURRICULUM,
    UNGROUNDED_CURRICULUM,
    ClipTrainConfig,
    LlavaTrainConfig,
)
from analysis_lib.training.lm_pretraining import LmPretrainConfig

MAIN = "pre-trained LM + grounding task (the chapter's LLaVA)"
FROM_SCRATCH = "LM from scratch + grounding task"
NO_GROUNDING = "pre-trained LM, no grounding task"
UNTRAINED_VIT = "untrained frozen ViT in CLIP's place (a control)"
HELD_OUT = "four objects never in the instruction data (a control)"
VARIANTS = (MAIN, FROM_SCRATCH, NO_GROUNDING, UNTRAINED_VIT, HELD_OUT)
"""What makes the extraction possible: the chapter's LLaVA recipe, its two ablations, and two controls: one keeps
the recipe but gives the LLaVA the toy CLIP's vision tower at its initial, never-trained weights (is it what CLIP's
training put in the encoder that LLaVA reads, or just the pixels?); the other never shows or names
``HELD_OUT_OBJECTS`` in its instruction data (does LLaVA read a relation, or recall it for objects it was taught?)."""
HELD_OUT_OBJECTS = ("red circle", "green square", "blue triangle", "yellow cross")
"""Each colour and each shape of these is taught in other objects (e.g. red squares, green circles)."""


def toy_setup(clip_steps: int, smoke: bool, variant: str = MAIN) -> ToySetup:
    """The chapter's toy setup for one of ``VARIANTS``; ``smoke`` shrinks everything to seconds."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
    curriculum = UNGROUNDED_CURRICULUM if variant == NO_GROUNDING else GROUNDED_CURRICULUM
    held_out = HELD_OUT_OBJECTS if variant == HELD_OUT else ()
    setup = ToySetup(
        clip_train=ClipTrainConfig(steps=clip_steps),
        llava_train=LlavaTrainConfig(curriculum=curriculum, held_out_objects=held_out),
        lm_pretrain=None if variant == FROM_SCRATCH else LmPretrainConfig(),
        vision=VisionSource(encoder="untrained") if variant == UNTRAINED_VIT else VisionSource(),
    )
    if not smoke:
        return setup
    return dataclasses.replace(
        setup,
        n_train_scenes=256,
        clip_train=ClipTrainConfig(steps=3, batch_size=32, warmup=1),
        llava_train=LlavaTrainConfig(
            curriculum=smoke_curriculum(curriculum), check_every=1, batch_size=16, warmup=1, validation_scenes=16,
            vqascore_check_scenes=8, restarts=0, held_out_objects=held_out,
        ),
        lm_pretrain=None if variant == FROM_SCRATCH else LmPretrainConfig(max_steps=2, check_every=1, held_out=16),
    )  # fmt: skip


def chapter_setup(clip_steps: int, smoke: bool, tokens: ImageTokens | None = None) -> ToySetup:
    """Chapter 1's toy setup (same CLIP, pre-trained LM and curriculum) with the given image tokens."""
    return dataclasses.replace(toy_setup(clip_steps, smoke), image_tokens=tokens or ImageTokens())
