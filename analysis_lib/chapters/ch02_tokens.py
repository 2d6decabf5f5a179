"""Chapter 2, "Is the information in the encoder, and which tokens carry it?": layer-wise probes of the
frozen toy CLIP, LLaVA retrained on other image tokens, and patch-aligned contrastive heads (PACL, SPARC)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from analysis_lib.attribution import patch_attribution, vqa_margin_fn
from analysis_lib.benchmarks import load_image, load_whatsup_controlled
from analysis_lib.cache import cached_artifact
from analysis_lib.chapters.ch01_same_encoder import toy_setup
from analysis_lib.full_scale import FullScaleConfig, load_full_benchmarks, score_models
from analysis_lib.image_tokens import ImageTokens
from analysis_lib.metrics import opposite_option
from analysis_lib.patch_contrastive import (
    PatchAlignedScorer,
    PatchHeadConfig,
    last_layer_patches,
    load_heads,
    save_heads,
    train_patch_heads,
)
from analysis_lib.pipeline import ToyModels, toy_models
from analysis_lib.probing import MLP_HIDDEN, PATCH_PROBE_SCENES, PROBE_STEPS, layer_probe_table
from analysis_lib.progress import seed_progress
from analysis_lib.scoring import VQAScorer
from analysis_lib.toy_benchmarks import RELATION_FILE
from analysis_lib.toy_runs import (
    CLIP_NAME,
    LLAVA_NAME,
    budgeted,
    condition_lines,
    evaluation_sets,
    model_scorers,
    run_variants,
    save_chapter_results,
    save_full_chapter_results,
    score_all,
    seed_row,
    stalled_lines,
    train_variants,
    variant_table,
)
from analysis_lib.toy_setup import EVAL_SEED, ToySetup, fresh_pixels
from analysis_lib.toyworld import render_all, sample_scenes
from analysis_lib.whatsup_probes import clip_encoder, probe_records, whatsup_layer_probes

ALL_PATCHES = "LLaVA: all patch tokens (LLaVA-1.5)"
TOKEN_VARIANTS = {
    ALL_PATCHES: ImageTokens(),
    "LLaVA: CLS token only": ImageTokens(tokens="cls"),
    "LLaVA: mean patch token only": ImageTokens(tokens="mean"),
    "LLaVA: CLS + patch tokens": ImageTokens(tokens="cls+patches"),
}
"""The token-usage variants: every one trained through the same curriculum, same caps."""
PACL, SPARC = "PACL heads (patch tokens)", "SPARC heads (patch + word tokens)"
HEADS = {PACL: PatchHeadConfig(loss="pacl"), SPARC: PatchHeadConfig(loss="sparc")}
PROBE_SCENES = {"train": 3000, "test": 1000}
SMOKE_PROBE_SCENES = {"train": 64, "test": 32}


def chapter_setup(clip_steps: int, smoke: bool, tokens: ImageTokens | None = None) -> ToySetup:
    """Chapter 1's toy setup (same CLIP, pre-trained LM and curriculum) with the given image tokens."""
    return dataclasses.replace(toy_setup(clip_steps, smoke), image_tokens=tokens or ImageTokens())


def smoke_heads(cfg: PatchHeadConfig, smoke: bool) -> PatchHeadConfig:
    """The head recipe, or two small steps of it in a smoke run."""
    return dataclasses.replace(cfg, steps=2, batch_size=16) if smoke else cfg


def cached_layer_probes(
    kind: str, key: dict, setup: ToySetup, seed: int, smoke: bool, encoder: Callable[[], torch.nn.Module],
    image_processor,
) -> pd.DataFrame:  # fmt: skip
    """The layer-wise probe table of ``encoder()`` (a frozen vision encoder) on fresh disjoint scenes preprocessed by
    ``image_processor``, cached as ``kind`` under ``key`` and the probes' settings."""
    sizes = SMOKE_PROBE_SCENES if smoke else PROBE_SCENES
    steps = 5 if smoke else PROBE_STEPS
    probe = {"mlp_hidden": MLP_HIDDEN, "steps": steps, "patch_scenes": PATCH_PROBE_SCENES}
    spec = {**key, "scenes": sizes, "eval_seed": EVAL_SEED, "probe": probe, "probe_seed": seed}

    def build(folder: Path) -> None:
        train_scenes, train_pixels = fresh_pixels(setup, image_processor, sizes["train"], EVAL_SEED + 20)
        test_scenes, test_pixels = fresh_pixels(setup, image_processor, sizes["test"], EVAL_SEED + 22)
        train, test = (train_pixels, train_scenes), (test_pixels, test_scenes)
        table = layer_probe_table(encoder(), train, test, setup.world.grid, seed=seed, steps=steps)
        (folder / "probes.csv").write_text(table.to_csv(index=False))

    folder, _ = cached_artifact(kind, spec, build)
    return pd.read_csv(folder / "probes.csv").assign(seed=seed, n_test=sizes["test"])


def layer_probes(setup: ToySetup, models: ToyModels, seed: int, smoke: bool) -> pd.DataFrame:
    """Layer-wise probe table of one seed's frozen CLIP on fresh disjoint scenes (cached)."""
    key, processor = {"clip": setup.clip_spec(seed)}, models.clip_processor.image_processor
    return cached_layer_probes("layer-probes", key, setup, seed, smoke, lambda: models.clip, processor)


def probe_summary(probes: pd.DataFrame) -> pd.DataFrame:
    """Probe accuracy per layer, view, target and probe kind: ``seed_row`` (its chance: the majority class) and the
    majority class."""
    keys, rows = ["target", "view", "probe", "layer"], []
    for values, group in probes.groupby(keys, sort=False):
        majority = group["majority class"].mean()
        summary = seed_row(group.rename(columns={"accuracy": "value"}), majority)
        rows.append(dict(zip(keys, values)) | summary | {"majority class": majority})
    return pd.DataFrame(rows)


def patch_heads(setup: ToySetup, models: ToyModels, seed: int, cfg: PatchHeadConfig, progress: bool = True):
    """Train (or load from the cache) PACL / SPARC heads on one seed's frozen CLIP: ``(scorer, folder)``."""
    spec = {"clip": setup.clip_spec(seed), "heads": dataclasses.asdict(cfg), "seed": seed}

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


@dataclass
class TokensRun:
    """Everything chapter 2 shows: scores of every scorer (``condition``), probes, folders and timings."""

    metrics: pd.DataFrame
    probes: pd.DataFrame
    folders: dict[str, dict[int, Path]]
    head_folders: dict[str, dict[int, Path]]
    seconds: dict[str, dict[int, float]]
    setup: ToySetup
    benchmark_dir: Path
    config: dict


def tokens_experiment(
    seeds: list[int], device: str, clip_steps: int, smoke: bool, progress: bool = True, workers: int = 0
) -> TokensRun:
    """Per seed: probe the frozen CLIP layer by layer, score CLIP, every token variant's LLaVA and the
    PACL / SPARC heads on chapter 1's sets (the LLaVAs not cached trained first, in ``workers`` processes)."""
    setup = chapter_setup(clip_steps, smoke)
    setups = {name: chapter_setup(clip_steps, smoke, tokens) for name, tokens in TOKEN_VARIANTS.items()
              if name != ALL_PATCHES}  # fmt: skip
    train_variants(setups, seeds, setup, device, progress, workers)
    bench_dir = evaluation_sets(setup, smoke)
    records, probes, seconds = [], [], {"probes": {}, "heads": {}}
    heads: dict[str, dict[int, Path]] = {name: {} for name in HEADS}
    folders: dict[str, dict[int, Path]] = {ALL_PATCHES: {}}
    for seed in seed_progress(seeds, "02_tokens"):
        models = toy_models(setup, seed, device, progress)
        start = time.perf_counter()
        probes.append(layer_probes(setup, models, seed, smoke))
        seconds["probes"][seed] = time.perf_counter() - start
        scorers = model_scorers(models)
        scorers = {CLIP_NAME: scorers[CLIP_NAME], ALL_PATCHES: scorers[LLAVA_NAME]}
        start = time.perf_counter()
        for name, cfg in HEADS.items():
            scorers[name], heads[name][seed] = patch_heads(setup, models, seed, smoke_heads(cfg, smoke), progress)
        seconds["heads"][seed] = time.perf_counter() - start
        records += [{**r, "condition": r["model"]} for r in score_all(scorers, bench_dir, seed)]
        folders[ALL_PATCHES][seed] = models.folders["llava"]
    variants = run_variants(setups, seeds, bench_dir, setup, device, progress)
    metrics = pd.concat([pd.DataFrame(records), variants.metrics.assign(model=LLAVA_NAME)], ignore_index=True)
    config = {
        "parameters": {"seeds": seeds, "device": device, "clip_steps": clip_steps, "smoke": smoke},
        "eval_seed": EVAL_SEED,
        "setups": {name: dataclasses.asdict(s) for name, s in setups.items()},
        "heads": {name: dataclasses.asdict(smoke_heads(cfg, smoke)) for name, cfg in HEADS.items()},
        "probe_scenes": SMOKE_PROBE_SCENES if smoke else PROBE_SCENES,
    }
    return TokensRun(metrics, pd.concat(probes, ignore_index=True), {**folders, **variants.folders}, heads,
                     {**seconds, **variants.seconds}, setup, bench_dir, config)  # fmt: skip


ORDER = [CLIP_NAME, *TOKEN_VARIANTS, *HEADS]


def comparison(run: TokensRun) -> pd.DataFrame:
    """Headline tests per scorer: CLIP, every LLaVA token variant and the heads, mean with 95% CI."""
    return variant_table(run.metrics, ORDER)


def attribution_maps(run: TokensRun, seed: int) -> tuple[Image.Image, dict[str, np.ndarray], str]:
    """Patch attributions of the VQAScore margin (true minus opposite-relation caption) on the first
    relation-set image, for the all-patches and the CLS-only LLaVA of ``seed``."""
    item = load_whatsup_controlled(run.benchmark_dir / RELATION_FILE)[0]
    gold = item.caption_options[0]
    foil = item.caption_options[opposite_option(item.caption_options, item.relation)]
    image, maps = load_image(item.image_path), {}
    for name in (ALL_PATCHES, "LLaVA: CLS token only"):
        params = run.config["parameters"]
        baseline = chapter_setup(params["clip_steps"], params["smoke"])
        variant = chapter_setup(params["clip_steps"], params["smoke"], TOKEN_VARIANTS[name])
        models = toy_models(variant if name == ALL_PATCHES else budgeted(variant, seed, baseline), seed)
        scorer = VQAScorer(models.llava, models.llava_processor, models.prompt_format)
        pixels = scorer.pixel_values([image])
        patch = models.llava.config.vision_config.patch_size
        maps[name.removeprefix("LLaVA: ")] = patch_attribution(vqa_margin_fn(scorer, gold, foil), pixels, patch)
    return image, maps, f'true: "{gold}"   foil: "{foil}"   (seed {seed})'


LLAVA_LAYER = 3  # hidden_states index of the toy LLaVA's feature layer (-2 of 4 layers)


def target_checks(table: pd.DataFrame, probe_table: pd.DataFrame) -> pd.DataFrame:
    """The chapter's targets, set before the run (from the paper's claims 2 and 7), each marked met or not
    on the seed means."""
    mean = {(r["test"], r["condition"]): r["mean"] for r in table.to_dict("records")}
    probe = probe_table.set_index(["target", "view", "probe", "layer"])["mean"].sort_index()
    pooled_best = probe.loc[("relation", "pooled embedding")].max()
    rel, attr = "relation 4-way", "attribute 4-way"
    cls_only = "LLaVA: CLS token only"
    midpoint = (mean[(rel, CLIP_NAME)] + mean[(rel, ALL_PATCHES)]) / 2
    checks = [
        ("MLP probe on the flattened patch tokens at LLaVA's layer reads the relation >= 80%",
         probe.loc[("relation", "patch tokens (flattened)", "mlp", LLAVA_LAYER)], lambda v: v >= 0.8),
        ("best probe on CLIP's pooled embedding (any layer, linear or MLP) reads the relation <= 60%",
         pooled_best, lambda v: v <= 0.6),
        ("LLaVA CLS-only relation 4-way at least 30 points below all patch tokens",
         mean[(rel, ALL_PATCHES)] - mean[(rel, cls_only)], lambda v: v >= 0.3),
        ("LLaVA CLS-only attribute 4-way >= 80%", mean[(attr, cls_only)], lambda v: v >= 0.8),
        ("PACL relation 4-way below the CLIP-LLaVA midpoint", mean[(rel, PACL)] - midpoint, lambda v: v < 0),
        ("SPARC minus PACL relation 4-way within 10 points (extra text tokens add little)",
         mean[(rel, SPARC)] - mean[(rel, PACL)], lambda v: abs(v) <= 0.1),
    ]  # fmt: skip
    return pd.DataFrame([{"target": t, "value": v, "met": bool(ok(v))} for t, v, ok in checks])


def findings(table: pd.DataFrame, probe_table: pd.DataFrame, transition_table: pd.DataFrame) -> str:
    """The chapter's reading of its own numbers, as Markdown written from the summary tables."""
    lines = condition_lines(table, ORDER) + stalled_lines(transition_table)
    relation = probe_table[probe_table.target == "relation"]
    best = relation.loc[relation.groupby(["view", "probe"])["mean"].idxmax()]
    for r in best.sort_values(["probe", "view"]).to_dict("records"):
        lines.append(f"* Relation probe, {r['probe']} on the {r['view']}: best at layer {r['layer']}, "
                     f"{r['mean']:.1%} (95% CI {r['ci95_low']:.1%}-{r['ci95_high']:.1%}; majority class "
                     f"{r['majority class']:.1%}).")  # fmt: skip
    return "\n".join(lines)


def probe_metrics(probes: pd.DataFrame) -> pd.DataFrame:
    """The probe table in the tidy metrics format (model = the frozen encoder, one row per seed)."""
    return pd.DataFrame({
        "model": "toy CLIP vision encoder (frozen)",
        "condition": [f"{p} probe on {v}, layer {n}" for p, v, n in zip(probes.probe, probes.view, probes.layer)],
        "benchmark": "layer probes", "metric": probes.target, "seed": probes.seed, "value": probes.accuracy,
        "ci_low": np.nan, "ci_high": np.nan, "n_units": probes.n_test,
    })  # fmt: skip


def save_results(run: TokensRun, scale: str, root: Path | None, total_seconds: float, tables: dict) -> Path:
    """Write ``metrics.csv`` (scores and probes) and ``run.json`` under ``<root>/02_tokens/<scale>[-smoke]``."""
    metrics = pd.concat([run.metrics, probe_metrics(run.probes)], ignore_index=True)
    extra = {"total_wall_seconds": total_seconds, "wall_seconds": run.seconds}
    return save_chapter_results("02_tokens", scale, root, metrics, run.config, extra, tables)


FULL_MODELS = {
    "LLaVA-1.5-7B, all patch tokens (LoRA)": "llava-1.5-7b-lora-patch",
    "LLaVA-1.5-7B, CLS token only (LoRA)": "llava-1.5-7b-lora-cls",
}
"""Full scale: the paper's LLaVA-1.5-7B pair, retrained the same way (LoRA, merged) on patch tokens and on the CLS
token alone (registry names; both in the original format, converted first: see ``registry_table``)."""


def tokens_full(config: FullScaleConfig, folder: Path, models: dict[str, str] | None = None) -> pd.DataFrame:
    """CLIP and the paper's patch-token and CLS-only LLaVA-1.5 pair (``models``: condition -> registry name or
    folder, ``FULL_MODELS`` unless given) scored on every full-scale benchmark of ``config`` (VQAScore for the
    LLaVAs, cosine for CLIP), score logs under ``folder``."""
    llavas = [(LLAVA_NAME, condition, spec, config.dtype) for condition, spec in (models or FULL_MODELS).items()]
    return score_models(config, folder, [(CLIP_NAME, CLIP_NAME, config.clip_model, config.clip_dtype), *llavas])


PROBE_CLIP = "clip-l14-336"
"""The CLIP whose layers the full-scale probes read: transformers' copy of the paper's CLIP ViT-L/14-336."""


def probes_full(config: FullScaleConfig, clip_model: str = PROBE_CLIP) -> pd.DataFrame:
    """Layer-wise linear probes of the frozen CLIP on ``config``'s What'sUp Controlled images: the relation and the
    object pair from its CLS token, mean patch token and pooled patch grid (``analysis_lib.whatsup_probes``)."""
    encoder = clip_encoder(clip_model, config.device, config.allow_download)
    return whatsup_layer_probes([encoder], load_full_benchmarks(config))


def save_full_results(
    metrics: pd.DataFrame, config: FullScaleConfig, root: Path | None, total_seconds: float, probes: pd.DataFrame
) -> Path:
    """Write a full-scale run's ``metrics.csv`` (scores, then the layer probes as ``whatsup_probes.probe_records``)
    and ``run.json`` (its config and models) under ``<root>/02_tokens/full``."""
    metrics = pd.concat([metrics, probe_records(probes)], ignore_index=True)
    return save_full_chapter_results("02_tokens", metrics, config, root, total_seconds, {"models": FULL_MODELS})
