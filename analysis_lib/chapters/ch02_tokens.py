"""Chapter 2, "Is the information in the encoder, and which tokens carry it?": layer-wise probes of the
frozen toy CLIP, LLaVA retrained on other image tokens, and patch-aligned contrastive heads (PACL, SPARC)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from analysis_lib.core.progress import seed_progress
from analysis_lib.data.benchmarks import load_image, load_whatsup_controlled
from analysis_lib.data.toy_benchmarks import RELATION_FILE
from analysis_lib.full.full_scale import FullScaleConfig, load_full_benchmarks, score_models
from analysis_lib.full.whatsup_probes import clip_encoder, probe_records, whatsup_layer_probes
from analysis_lib.models.image_tokens import ImageTokens
from analysis_lib.scoring.attribution import patch_attribution, vqa_margin_fn
from analysis_lib.scoring.scorers import VQAScorer
from analysis_lib.stats.metrics import opposite_option
from analysis_lib.toy.layer_probes import PROBE_SCENES, SMOKE_PROBE_SCENES, layer_probes, probe_metrics
from analysis_lib.toy.pipeline import toy_models, toy_patch_heads
from analysis_lib.toy.toy_recipe import chapter_setup
from analysis_lib.toy.toy_runs import (
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
    stalled_lines,
    train_variants,
    variant_table,
)
from analysis_lib.toy.toy_setup import EVAL_SEED, ToySetup
from analysis_lib.training.patch_contrastive import (
    HEADS,
    PACL,
    SPARC,
    smoke_heads,
)

ALL_PATCHES = "LLaVA: all patch tokens (LLaVA-1.5)"
TOKEN_VARIANTS = {
    ALL_PATCHES: ImageTokens(),
    "LLaVA: CLS token only": ImageTokens(tokens="cls"),
    "LLaVA: mean patch token only": ImageTokens(tokens="mean"),
    "LLaVA: CLS + patch tokens": ImageTokens(tokens="cls+patches"),
}
"""The token-usage variants: every one trained through the same curriculum, same caps."""


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
            scorers[name], heads[name][seed] = toy_patch_heads(setup, models, seed, smoke_heads(cfg, smoke), progress)
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
    object pair from its CLS token, mean patch token and pooled patch grid (``analysis_lib.full.whatsup_probes``)."""
    encoder = clip_encoder(clip_model, config.device, config.allow_download)
    return whatsup_layer_probes([encoder], load_full_benchmarks(config))


def save_full_results(
    metrics: pd.DataFrame, config: FullScaleConfig, root: Path | None, total_seconds: float, probes: pd.DataFrame
) -> Path:
    """Write a full-scale run's ``metrics.csv`` (scores, then the layer probes as ``whatsup_probes.probe_records``)
    and ``run.json`` (its config and models) under ``<root>/02_tokens/full``."""
    metrics = pd.concat([metrics, probe_records(probes)], ignore_index=True)
    return save_full_chapter_results("02_tokens", metrics, config, root, total_seconds, {"models": FULL_MODELS})
