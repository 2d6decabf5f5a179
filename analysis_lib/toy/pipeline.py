"""Train-or-load the toy models through the artifact cache: the one place that builds them.

The toy CLIP, the pre-trained toy LM, the SSL (DINO) encoder, the frozen-encoder features a LLaVA trains on and
the toy LLaVA are each built here (``toy_clip_folder``, ``pretrained_lm``, ``ssl_vision_model``,
``llava_features``, ``toy_llava_folder``) from the settings of a ``toy_setup.ToySetup``; the modules that define
the models and their training (``models``, ``comm_merge``, ``lm_pretraining``, ``ssl_encoder``, ``training``) never
import this one. ``toy_models`` trains or loads one seed's CLIP and LLaVA in this process; ``train_toy_models``
trains many LLaVAs (variants x seeds) in worker processes first, so that ``toy_models`` then finds them cached.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
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

from analysis_lib.core.cache import cached_artifact, is_cached, spec_key
from analysis_lib.core.progress import console
from analysis_lib.data.toyworld import render_all, sample_scenes
from analysis_lib.models.comm_merge import load_toy_llava, with_source
from analysis_lib.models.features import cached_features, llava_selected_features
from analysis_lib.models.image_tokens import apply_variant, install_hooks
from analysis_lib.models.prompts import PromptFormat
from analysis_lib.models.tiny import load_language_model, toy_clip, toy_image_processor, toy_llava_from_clip, toy_lm
from analysis_lib.toy.toy_setup import EVAL_SEED, ToySetup, TrainingData, fresh_pixels, ssl_recipe, ssl_spec
from analysis_lib.training.clip_llava import Stopwatch, train_clip, train_llava
from analysis_lib.training.lm_pretraining import pretrain_lm
from analysis_lib.training.negclip import NegClipConfig, train_negclip
from analysis_lib.training.patch_contrastive import (
    PatchAlignedScorer,
    PatchHeadConfig,
    last_layer_patches,
    load_heads,
    save_heads,
    train_patch_heads,
)
from analysis_lib.training.ssl_encoder import SSL_TRAIN, SslTrainConfig, held_out_check, initial_encoder, train_dino

SSL_CHECK_SEED = EVAL_SEED + 40  # held-out scenes of the SSL encoder's training checks


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


def write_training_log(folder: Path, log: dict) -> None:
    """Save the training log (loss curves, ...) beside the weights."""
    (folder / "training_log.json").write_text(json.dumps(log))


def training_log(folder: Path) -> dict:
    """The training log saved with a toy model (CLIP: ``curves``; LLaVA: one log per curriculum ``stages``)."""
    return json.loads((Path(folder) / "training_log.json").read_text())


def toy_clip_folder(
    setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True, data: TrainingData | None = None
) -> tuple[Path, bool]:
    """Train (or load from the cache) the toy CLIP for one seed: ``(folder, reused)``."""
    data = data or TrainingData(setup, seed)

    def build(folder: Path) -> None:
        model, processor = toy_clip(setup.world, setup.clip_size, seed)
        pixels = data.pixels(processor.image_processor)
        start = time.perf_counter()
        curve = train_clip(
            model.to(device), processor, data.scenes, pixels, setup.world, setup.clip_train, seed, progress
        )
        seconds = time.perf_counter() - start
        model.cpu().save_pretrained(folder)
        processor.save_pretrained(folder)
        write_training_log(folder, {"curves": {"contrastive": curve}, "train_seconds": seconds})

    return cached_artifact("clip", setup.clip_spec(seed), build)


def load_clip(folder: Path) -> tuple[CLIPModel, CLIPProcessor]:
    """A cached toy CLIP (eval mode) and its processor."""
    return CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder, use_fast=False)


def pretrained_lm(setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True) -> tuple[Path, bool]:
    """Pre-train (or load from the cache) the toy LM for one seed: ``(folder, reused)``."""

    def build(folder: Path) -> None:
        model, tokenizer = toy_lm(setup.llava_size, seed)
        start = time.perf_counter()
        log = pretrain_lm(model.to(device), tokenizer, setup.lm_pretrain, seed, progress)
        model.cpu().save_pretrained(folder)
        write_training_log(folder, {**log, "train_seconds": time.perf_counter() - start})

    return cached_artifact("toy-lm", setup.lm_spec(seed), build)


def ssl_vision_model(
    setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True, cfg: SslTrainConfig = SSL_TRAIN
) -> tuple[CLIPVisionModel, Path]:
    """Train (or load from the cache) the DINO encoder on the toy CLIP's training images: ``(encoder, folder)``."""

    def build(folder: Path) -> None:
        processor = toy_image_processor(setup.world)
        pixels = TrainingData(setup, seed).pixels(processor)
        check_scenes, check_pixels = fresh_pixels(setup, processor, cfg.check_scenes, SSL_CHECK_SEED)
        start = time.perf_counter()
        encoder, log = train_dino(
            initial_encoder(setup.world, setup.clip_size, seed).to(device), pixels, cfg, seed,
            lambda enc: held_out_check(enc, check_pixels.to(device), check_scenes, seed), progress,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        encoder.cpu().save_pretrained(folder)
        write_training_log(folder, {**log, "train_seconds": seconds})

    folder, _ = cached_artifact("ssl-encoder", ssl_spec(setup, seed, cfg), build)
    return CLIPVisionModel.from_pretrained(folder).eval().to(device), folder


def ssl_tower(setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True) -> CLIPVisionModel | None:
    """The SSL (DINO) toy encoder that ``setup``'s vision source reads (trained or loaded), else None."""
    if not setup.vision.uses_ssl:
        return None
    return ssl_vision_model(setup, seed, device, progress, ssl_recipe(setup))[0].cpu()


def second_tower(setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True) -> CLIPVisionModel | None:
    """The encoder ``setup``'s vision source reads besides or instead of the trained CLIP's: the SSL encoder
    (trained or loaded), the toy CLIP's vision tower at its initial weights, or None."""
    if setup.vision.encoder == "untrained":
        return initial_encoder(setup.world, setup.clip_size, seed)
    return ssl_tower(setup, seed, device, progress)


def initial_llava(
    setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True, data: TrainingData | None = None
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """The toy LLaVA of ``setup`` before its training: its CLIP's vision tower (frozen), vision source and
    image-token variant, and the pre-trained LM when it has one (each trained first if not cached)."""
    clip, clip_processor = load_clip(toy_clip_folder(setup, seed, device, progress, data)[0])
    model, processor = toy_llava_from_clip(clip, clip_processor, setup.llava_size, seed)
    model = with_source(model, setup.vision, second_tower(setup, seed, device, progress), seed)
    apply_variant(model, setup.image_tokens)
    if setup.lm_pretrain is not None:
        lm_folder, _ = pretrained_lm(setup, seed, device, progress)
        load_language_model(model, LlamaForCausalLM.from_pretrained(lm_folder))
    return model, processor


def feature_layer(setup: ToySetup) -> int | list[int]:
    """The vision layer(s) whose features ``setup``'s LLaVA reads (its ``vision_feature_layer``)."""
    return setup.vision.feature_layer(setup.clip_size.vision_layers)


def llava_features(
    setup: ToySetup, seed: int, model: LlavaForConditionalGeneration, image_processor, data: TrainingData
) -> torch.Tensor:
    """The frozen-encoder features that ``model`` (``setup``'s ``initial_llava``) reads from the training scenes
    (preprocessed by ``image_processor``), computed once and cached."""
    spec = setup.feature_spec(seed, model.config.vision_feature_layer)
    return cached_features(spec, lambda: llava_selected_features(model, data.pixels(image_processor)))


def prepared_features(setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True) -> torch.Tensor:
    """``llava_features`` of ``setup``'s LLaVA for one seed (its CLIP, SSL encoder and LM trained first if needed)."""
    data = TrainingData(setup, seed)
    model, processor = initial_llava(setup, seed, device, progress, data)
    return llava_features(setup, seed, model, processor.image_processor, data)


def toy_llava_folder(
    setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True, data: TrainingData | None = None,
    watch: Stopwatch | None = None,
) -> tuple[Path, bool]:  # fmt: skip
    """Train (or load from the cache) the toy LLaVA for one seed, what it needs first: ``(folder, reused)``;
    ``watch`` times its ``features``."""
    data, watch = data or TrainingData(setup, seed), watch or Stopwatch()

    def build(folder: Path) -> None:
        model, processor = initial_llava(setup, seed, device, progress, data)
        with watch.time("features"):
            features = llava_features(setup, seed, model, processor.image_processor, data)
        start = time.perf_counter()
        log = train_llava(
            model.to(device), processor.tokenizer, data.scenes, features, setup.prompt_format, setup.llava_train, seed,
            progress,
        )  # fmt: skip
        model.cpu().save_pretrained(folder)
        processor.save_pretrained(folder)
        setup.prompt_format.save(folder)
        write_training_log(folder, {**log, "train_seconds": time.perf_counter() - start})

    return cached_artifact("llava", setup.llava_spec(seed), build)


def toy_models(setup: ToySetup, seed: int, device: str = "cpu", progress: bool = True) -> ToyModels:
    """Train (or load from the cache) the toy CLIP and LLaVA for one seed."""
    watch, data = Stopwatch(), TrainingData(setup, seed)
    with watch.time("clip"):
        clip_dir, clip_reused = toy_clip_folder(setup, seed, device, progress, data)
        clip, clip_processor = load_clip(clip_dir)
    folders, reused = {"clip": clip_dir}, {"clip": clip_reused}
    if setup.lm_pretrain is not None:
        with watch.time("lm"):
            folders["lm"], reused["lm"] = pretrained_lm(setup, seed, device, progress)
    with watch.time("llava"):
        folders["llava"], reused["llava"] = toy_llava_folder(setup, seed, device, progress, data, watch)
        llava = install_hooks(load_toy_llava(folders["llava"]).eval())
        llava_processor = LlavaProcessor.from_pretrained(folders["llava"], use_fast=False)
    if "features" in watch.seconds:
        watch.seconds["llava"] -= watch.seconds["features"]
    llava_format = PromptFormat.load(folders["llava"])
    clip, llava = clip.to(device), llava.to(device)
    return ToyModels(clip, clip_processor, llava, llava_processor, llava_format, folders, reused, watch.seconds)


def toy_negclip(
    setup: ToySetup, models: ToyModels, data: TrainingData, seed: int, cfg: NegClipConfig, progress: bool = True
) -> tuple[CLIPModel, Path]:
    """One seed's toy CLIP fine-tuned NegCLIP-style on the toy LLaVA's training scenes (trained or loaded from the
    cache): ``(model, folder)``."""
    spec = {"clip": setup.clip_spec(seed), "negclip": asdict(cfg), "captions": "relational", "seed": seed}

    def build(folder: Path) -> None:
        model = CLIPModel.from_pretrained(models.folders["clip"])
        start = time.perf_counter()
        pixels = data.pixels(models.clip_processor.image_processor)
        curve = train_negclip(model, models.clip_processor, data.scenes, pixels, cfg, seed, progress)
        model.save_pretrained(folder)
        write_training_log(folder, {"curve": curve, "train_seconds": time.perf_counter() - start})

    folder, _ = cached_artifact("negclip", spec, build)
    return CLIPModel.from_pretrained(folder).eval(), folder


BUILDERS: dict[str, Callable[[ToySetup, int, str, bool], object]] = {
    "clip": toy_clip_folder,
    "toy-lm": pretrained_lm,
    "ssl-encoder": ssl_tower,
    "features": prepared_features,
    "llava": toy_llava_folder,
}
"""What builds each kind of cached toy artefact, from ``(setup, seed, device, progress)``."""
SPECS: dict[str, Callable[[ToySetup, int], dict | None]] = {
    "clip": ToySetup.clip_spec,
    "toy-lm": ToySetup.lm_spec,
    "ssl-encoder": lambda setup, seed: ssl_spec(setup, seed, ssl_recipe(setup)) if setup.vision.uses_ssl else None,
    "features": lambda setup, seed: setup.feature_spec(seed, feature_layer(setup)),
    "llava": ToySetup.llava_spec,
}
"""The spec each kind is cached under (None: the setup has no such artefact)."""
PHASES = (("clip", "toy-lm", "ssl-encoder"), ("features",), ("llava",))
"""The order of builds: each phase needs only what earlier phases built."""


@dataclass(frozen=True)
class Build:
    """One cached toy artefact to build: its kind (a ``BUILDERS`` key), setup and seed."""

    kind: str
    setup: ToySetup
    seed: int

    def spec(self) -> dict | None:
        """The spec the cache keys it by."""
        return SPECS[self.kind](self.setup, self.seed)


def job_builds(setup: ToySetup, seed: int) -> list[Build]:
    """What ``toy_models(setup, seed)`` needs cached: the CLIP and LM it loads, and unless its LLaVA is cached
    the SSL encoder, features and LLaVA."""
    kinds = ["clip", "toy-lm"] if is_cached("llava", setup.llava_spec(seed)) else list(BUILDERS)
    return [Build(kind, setup, seed) for kind in kinds if SPECS[kind](setup, seed) is not None]


def missing_builds(jobs: list[tuple[ToySetup, int]]) -> list[list[Build]]:
    """Per phase (``PHASES``), the builds that ``jobs`` need and the cache lacks, each artefact once."""
    needed: dict[tuple[str, str], Build] = {}
    for setup, seed in jobs:
        for build in job_builds(setup, seed):
            needed.setdefault((build.kind, spec_key(build.spec())), build)
    missing = [build for build in needed.values() if not is_cached(build.kind, build.spec())]
    return [[build for build in missing if build.kind in kinds] for kinds in PHASES]


def run_build(build: Build, device: str = "cpu", progress: bool = True) -> str:
    """Build ``build``'s artefact into the cache; the console line that says so."""
    start = time.perf_counter()
    BUILDERS[build.kind](build.setup, build.seed, device, progress)
    return f"{build.kind} of seed {build.seed} built in {time.perf_counter() - start:.0f} s"


def default_workers() -> int:
    """Worker processes when none are asked for: two, or one on a one-core machine."""
    return min(2, os.cpu_count() or 1)


def _start_worker() -> None:
    """Set up a worker process: one torch thread; its stdout and stderr go to the console, never a notebook."""
    torch.set_num_threads(1)
    for fd in (1, 2):
        os.dup2(console().fileno(), fd)


@contextmanager
def _mapper(workers: int) -> Iterator[Callable]:
    """``map`` in this process (one worker), else ``imap_unordered`` over a pool of spawned workers, closed and
    joined when done (a worker that exits normally releases its semaphores; one terminated would leak them)."""
    if workers == 1:
        yield map
        return
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_start_worker) as pool:
        yield pool.imap_unordered
        pool.close()
        pool.join()


def run_phases(phases: list[list[Build]], workers: int = 0, device: str = "cpu", progress: bool = True) -> None:
    """Run the builds of each phase in turn in ``workers`` processes of one torch thread each (0:
    ``default_workers()``); one worker, or one build at a time, runs them in this process. Builds write through the
    cache's atomic renames; a console line says when each is done."""
    total, done = sum(map(len, phases)), 0
    if total == 0:
        return
    workers = min(workers or default_workers(), max(map(len, phases)))
    print(f"  toy models: {total} to build in {workers} process(es)", file=console(), flush=True)
    with _mapper(workers) as mapped:
        for phase in phases:
            for line in mapped(partial(run_build, device=device, progress=progress), phase):
                done += 1
                print(f"  toy models: {line} ({done}/{total})", file=console(), flush=True)


def train_toy_models(
    jobs: list[tuple[ToySetup, int]], workers: int = 0, device: str = "cpu", progress: bool = True
) -> None:
    """Train every ``(setup, seed)`` LLaVA of ``jobs`` that the cache lacks, after what it needs (CLIPs, LMs and
    SSL encoders, then features; each once, so that no two workers build the same), in ``workers`` processes
    (``run_phases``), so that ``toy_models`` then loads them all from the cache."""
    run_phases(missing_builds(jobs), workers, device, progress)


def seed_jobs(setups: list[ToySetup], seeds: list[int]) -> list[tuple[ToySetup, int]]:
    """Every setup on every seed, seed by seed: ``train_toy_models``'s jobs."""
    return [(setup, seed) for seed in seeds for setup in setups]


def toy_patch_heads(
    setup: ToySetup, models: ToyModels, seed: int, cfg: PatchHeadConfig, progress: bool = True
) -> tuple[PatchAlignedScorer, Path]:
    """Train (or load from the cache) PACL / SPARC heads on one seed's frozen CLIP: ``(scorer, folder)``."""
    spec = {"clip": setup.clip_spec(seed), "heads": asdict(cfg), "seed": seed}

    def build(folder: Path) -> None:
        scenes = sample_scenes(setup.n_train_scenes, setup.world, seed)
        pixels = models.clip_processor.image_processor(
            list(render_all(scenes, setup.world, seed + 10_000)), return_tensors="pt"
        )["pixel_values"]
        start = time.perf_counter()
        heads, curve = train_patch_heads(
            models.clip, models.clip_processor, scenes, last_layer_patches(models.clip, pixels), setup.world, cfg,
            seed, progress,
        )  # fmt: skip
        save_heads(heads, cfg, folder)
        log = {"curve": curve, "train_seconds": time.perf_counter() - start}
        (folder / "training_log.json").write_text(json.dumps(log))

    folder, _ = cached_artifact("patch-heads", spec, build)
    heads = load_heads(models.clip, folder).to(next(models.clip.parameters()).device)
    return PatchAlignedScorer(models.clip, models.clip_processor, heads, cfg.loss), folder
