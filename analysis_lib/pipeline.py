"""Train-or-load the toy models through the artifact cache: CLIP first, then LLaVA on its frozen tower."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import (
    CLIPModel,
    CLIPProcessor,
    CLIPVisionModel,
    LlamaForCausalLM,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from analysis_lib.cache import cached_artifact
from analysis_lib.comm_merge import VisionSource, load_toy_llava, with_source
from analysis_lib.features import cached_features, llava_selected_features, pixel_tensor
from analysis_lib.image_tokens import ImageTokens, apply_variant, install_hooks
from analysis_lib.lm_pretraining import LmPretrainConfig, pretrain_lm
from analysis_lib.models import ClipSize, LlavaSize, load_language_model, toy_clip, toy_llava_from_clip, toy_lm
from analysis_lib.prompts import TOY_FORMAT, PromptFormat
from analysis_lib.toyworld import WorldConfig, render_all, sample_scenes
from analysis_lib.training import ClipTrainConfig, LlavaTrainConfig, Stopwatch, train_clip, train_llava


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
        not LLaVA-1.5's own, so that models trained before variants existed keep their key)."""
        spec = {
            "clip": self.clip_spec(seed),
            "llava_size": asdict(self.llava_size),
            "lm": self.lm_spec(seed),
            "llava_train": asdict(self.llava_train),
            "prompt_format": asdict(self.prompt_format),
            "seed": seed,
        }
        spec = spec if self.image_tokens.is_default else {**spec, "image_tokens": asdict(self.image_tokens)}
        return spec if self.vision.is_default else {**spec, "vision": self.vision_spec(seed)}

    def vision_spec(self, seed: int) -> dict:
        """The vision source of a non-default LLaVA and, when it reads the SSL encoder, that encoder's spec."""
        if not self.vision.uses_ssl:
            return asdict(self.vision)
        from analysis_lib.ssl_encoder import ssl_spec  # it builds on this module

        return {**asdict(self.vision), "ssl": ssl_spec(self, seed, ssl_recipe(self))}

    def feature_spec(self, seed: int, layer: int | list[int]) -> dict:
        """What determines the frozen-encoder features the LLaVA trains on."""
        spec = {"clip": self.clip_spec(seed), "layer": layer, **self.image_tokens.feature_key()}
        return spec if self.vision.is_default else {**spec, "vision": self.vision_spec(seed)}


@dataclass
class ToyModels:
    """A trained toy CLIP and the toy LLaVA built on its frozen vision tower."""

    clip: CLIPModel
    clip_processor: CLIPProcessor
    llava: LlavaForConditionalGeneration
    llava_processor: LlavaProcessor
    prompt_format: PromptFormat
    folders: dict[str, Path]
    reused: dict[str, bool]
    seconds: dict[str, float]


class _TrainingData:
    """Training scenes and their pixels, made only if something has to be trained."""

    def __init__(self, setup: ToySetup, seed: int) -> None:
        self.setup, self.seed, self._data = setup, seed, None

    def get(self, image_processor) -> tuple[list, torch.Tensor]:
        """Scenes and preprocessed pixels (rendered on first use)."""
        if self._data is None:
            scenes = sample_scenes(self.setup.n_train_scenes, self.setup.world, self.seed)
            images = render_all(scenes, self.setup.world, self.seed + 10_000)
            self._data = scenes, pixel_tensor(images, image_processor)
        return self._data


def _write_log(folder: Path, log: dict) -> None:
    """Save the training log (loss curves, ...) beside the weights."""
    (folder / "training_log.json").write_text(json.dumps(log))


def pretrained_lm(setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True) -> tuple[Path, bool]:
    """Pre-train (or load from the cache) the toy LM for one seed: ``(folder, reused)``."""

    def build(folder: Path) -> None:
        model, tokenizer = toy_lm(setup.llava_size, seed)
        start = time.perf_counter()
        log = pretrain_lm(model.to(device), tokenizer, setup.lm_pretrain, seed, progress)
        model.cpu().save_pretrained(folder)
        _write_log(folder, {**log, "train_seconds": time.perf_counter() - start})

    return cached_artifact("toy-lm", setup.lm_spec(seed), build)


def ssl_tower(setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True) -> CLIPVisionModel | None:
    """The SSL (DINO) toy encoder that ``setup``'s vision source reads (trained or loaded), else None."""
    if not setup.vision.uses_ssl:
        return None
    from analysis_lib.ssl_encoder import ssl_vision_model  # it builds on this module

    return ssl_vision_model(setup, seed, device, progress, ssl_recipe(setup))[0].cpu()


def ssl_recipe(setup: ToySetup):
    """The ``SslTrainConfig`` of the SSL encoder that ``setup``'s vision source reads (smoke: two steps)."""
    from analysis_lib.ssl_encoder import SSL_TRAIN, smoke_ssl  # it builds on this module

    return smoke_ssl(SSL_TRAIN) if setup.vision.ssl_smoke else SSL_TRAIN


def toy_models(setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True) -> ToyModels:
    """Train (or load from the cache) the toy CLIP and LLaVA for one seed."""
    watch = Stopwatch()
    data = _TrainingData(setup, seed)
    reused: dict[str, bool] = {}

    def build_clip(folder: Path) -> None:
        model, processor = toy_clip(setup.world, setup.clip_size, seed)
        scenes, pixels = data.get(processor.image_processor)
        start = time.perf_counter()
        curve = train_clip(model.to(device), processor, scenes, pixels, setup.world, setup.clip_train, seed, progress)
        seconds = time.perf_counter() - start
        model.cpu().save_pretrained(folder)
        processor.save_pretrained(folder)
        _write_log(folder, {"curves": {"contrastive": curve}, "train_seconds": seconds})

    with watch.time("clip"):
        clip_dir, clip_reused = cached_artifact("clip", setup.clip_spec(seed), build_clip)
        clip = CLIPModel.from_pretrained(clip_dir).eval()
        clip_processor = CLIPProcessor.from_pretrained(clip_dir, use_fast=False)

    folders = {"clip": clip_dir}
    if setup.lm_pretrain is not None:
        with watch.time("lm"):
            folders["lm"], reused["lm"] = pretrained_lm(setup, seed, device, progress)

    def build_llava(folder: Path) -> None:
        model, processor = toy_llava_from_clip(clip, clip_processor, setup.llava_size, seed)
        model = with_source(model, setup.vision, ssl_tower(setup, seed, device, progress), seed)
        apply_variant(model, setup.image_tokens)
        if setup.lm_pretrain is not None:
            load_language_model(model, LlamaForCausalLM.from_pretrained(folders["lm"]))
        with watch.time("features"):
            features = cached_features(
                setup.feature_spec(seed, model.config.vision_feature_layer),
                lambda: llava_selected_features(model, data.get(clip_processor.image_processor)[1]),
            )
        scenes, _ = data.get(clip_processor.image_processor)
        start = time.perf_counter()
        log = train_llava(
            model.to(device),
            processor.tokenizer,
            scenes,
            features,
            setup.prompt_format,
            setup.llava_train,
            seed,
            progress,
        )
        model.cpu().save_pretrained(folder)
        processor.save_pretrained(folder)
        setup.prompt_format.save(folder)
        _write_log(folder, {**log, "train_seconds": time.perf_counter() - start})

    with watch.time("llava"):
        llava_dir, llava_reused = cached_artifact("llava", setup.llava_spec(seed), build_llava)
        llava = install_hooks(load_toy_llava(llava_dir).eval())
        llava_processor = LlavaProcessor.from_pretrained(llava_dir, use_fast=False)
    if "features" in watch.seconds:
        watch.seconds["llava"] -= watch.seconds["features"]
    return ToyModels(
        clip.to(device),
        clip_processor,
        llava.to(device),
        llava_processor,
        PromptFormat.load(llava_dir),
        {**folders, "llava": llava_dir},
        {"clip": clip_reused, **reused, "llava": llava_reused},
        watch.seconds,
    )


def training_log(folder: Path) -> dict:
    """The training log saved with a toy model (CLIP: ``curves``; LLaVA: one log per curriculum ``stages``)."""
    return json.loads((Path(folder) / "training_log.json").read_text())
