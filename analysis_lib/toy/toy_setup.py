"""What determines the toy models, and the scenes they train and are checked on.

``ToySetup`` holds every setting of the toy CLIP, pre-trained LM, SSL encoder and LLaVA apart from the seed, and
gives each model's *spec* (what the artifact cache keys it by); ``TrainingData`` and ``fresh_pixels`` make the
scenes. The models themselves are built in ``analysis_lib.toy.pipeline``.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from analysis_lib.data.toyworld import WorldConfig, object_offsets, render_all, sample_scenes
from analysis_lib.models.comm_merge import VisionSource
from analysis_lib.models.features import pixel_tensor
from analysis_lib.models.image_tokens import ImageTokens
from analysis_lib.models.prompts import TOY_FORMAT, PromptFormat
from analysis_lib.models.tiny import ClipSize, LlavaSize
from analysis_lib.training.clip_llava import ClipTrainConfig, LlavaTrainConfig
from analysis_lib.training.lm_pretraining import LmPretrainConfig
from analysis_lib.training.ssl_encoder import SSL_TRAIN, SslTrainConfig, smoke_ssl

EVAL_SEED = 12345  # the evaluation sets' seed; held-out scenes of checks and probes are drawn from EVAL_SEED + k


@dataclass(frozen=True)
class ToySetup:
    """Everything that determines the toy models, apart from the seed."""

    world: WorldConfig = field(default_factory=WorldConfig)
    n_train_scenes: int = 20000
    clip_size: ClipSize = field(default_factory=ClipSize)
    clip_train: ClipTrainConfig = field(default_factory=ClipTrainConfig)
    llava_size: LlavaSize = field(default_factory=LlavaSize)
    llava_train: LlavaTrainConfig = field(default_factory=LlavaTrainConfig)
    lm_pretrain: LmPretrainConfig | None = field(default_factory=LmPretrainConfig)
    prompt_format: PromptFormat = TOY_FORMAT
    image_tokens: ImageTokens = field(default_factory=ImageTokens)
    vision: VisionSource = field(default_factory=VisionSource)

    def lm_spec(self, seed: int) -> dict | None:
        """What determines the pre-trained toy LM (None: the LLaVA's LM starts from scratch)."""
        if self.lm_pretrain is None:
            return None
        return {"llava_size": asdict(self.llava_size), "lm_pretrain": asdict(self.lm_pretrain), "seed": seed}

    def clip_spec(self, seed: int) -> dict:
        """What determines the toy CLIP."""
        return {
            "world": asdict(self.world),
            "n_train_scenes": self.n_train_scenes,
            "clip_size": asdict(self.clip_size),
            "clip_train": asdict(self.clip_train),
            "seed": seed,
        }

    def llava_spec(self, seed: int) -> dict:
        """What determines the toy LLaVA (its CLIP's spec included; the image-token variant when it is
        not LLaVA-1.5's own and the step budget when there is one, so that models trained before variants and
        budgets existed keep their key; held-out objects likewise)."""
        train = asdict(self.llava_train)
        if train["step_budget"] is None:
            del train["step_budget"]
        if not train["held_out_objects"]:
            del train["held_out_objects"]
        spec = {
            "clip": self.clip_spec(seed),
            "llava_size": asdict(self.llava_size),
            "lm": self.lm_spec(seed),
            "llava_train": train,
            "prompt_format": asdict(self.prompt_format),
            "seed": seed,
        }
        spec = spec if self.image_tokens.is_default else {**spec, "image_tokens": asdict(self.image_tokens)}
        return spec if self.vision.is_default else {**spec, "vision": self.vision_spec(seed)}

    def vision_spec(self, seed: int) -> dict:
        """The vision source of a non-default LLaVA and, when it reads the SSL encoder, that encoder's spec."""
        if not self.vision.uses_ssl:
            return asdict(self.vision)
        return {**asdict(self.vision), "ssl": ssl_spec(self, seed, ssl_recipe(self))}

    def feature_spec(self, seed: int, layer: int | list[int]) -> dict:
        """What determines the frozen-encoder features the LLaVA trains on."""
        spec = {"clip": self.clip_spec(seed), "layer": layer, **self.image_tokens.feature_key()}
        return spec if self.vision.is_default else {**spec, "vision": self.vision_spec(seed)}


def ssl_recipe(setup: ToySetup) -> SslTrainConfig:
    """The recipe of the SSL encoder that ``setup``'s vision source reads (smoke: two steps)."""
    return smoke_ssl(SSL_TRAIN) if setup.vision.ssl_smoke else SSL_TRAIN


def ssl_spec(setup: ToySetup, seed: int, cfg: SslTrainConfig = SSL_TRAIN) -> dict:
    """What determines the self-supervised encoder."""
    return {
        "world": asdict(setup.world),
        "n_train_scenes": setup.n_train_scenes,
        "clip_size": asdict(setup.clip_size),
        "ssl": asdict(cfg),
        "seed": seed,
    }


class TrainingData:
    """The toy models' training scenes and their pixels, each made on first use."""

    def __init__(self, setup: ToySetup, seed: int) -> None:
        self.setup, self.seed, self._pixels = setup, seed, None

    @functools.cached_property
    def scenes(self) -> list:
        """The training scenes of ``seed``."""
        return sample_scenes(self.setup.n_train_scenes, self.setup.world, self.seed)

    def pixels(self, image_processor) -> torch.Tensor:
        """The scenes rendered and preprocessed by ``image_processor`` (on first use; later calls reuse them)."""
        if self._pixels is None:
            images = render_all(self.scenes, self.setup.world, self.seed + 10_000)
            self._pixels = pixel_tensor(images, image_processor)
        return self._pixels


RENDER_SHIFT = 1  # fresh scenes drawn with seed s are rendered with seed s + RENDER_SHIFT


def fresh_pixels(setup: ToySetup, image_processor, n_scenes: int, seed: int) -> tuple[list, torch.Tensor]:
    """``n_scenes`` new scenes (``seed``) and their pixels, preprocessed by ``image_processor``."""
    scenes = sample_scenes(n_scenes, setup.world, seed=seed)
    return scenes, pixel_tensor(render_all(scenes, setup.world, seed + RENDER_SHIFT), image_processor)


def fresh_offsets(setup: ToySetup, scenes: list, seed: int) -> np.ndarray:
    """The objects' offsets in their cells (``object_offsets``) in the images ``fresh_pixels(..., seed)`` made."""
    return object_offsets(scenes, setup.world, seed + RENDER_SHIFT)
