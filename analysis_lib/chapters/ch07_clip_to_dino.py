"""Chapter 7, "From CLIP to DINO": a self-supervised (DINO) toy encoder probed layer by layer beside the toy
CLIP, and the toy LLaVA fed by CLIP's penultimate layer, CLIP's multi-level merge (COMM), the SSL encoder, or
CLIP + SSL merged as COMM does (Jiang et al. 2023, arXiv 2310.08825)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from analysis_lib.book.plots import model_palette
from analysis_lib.core.progress import seed_progress
from analysis_lib.data.benchmarks import load_whatsup
from analysis_lib.full.whatsup_probes import clip_encoder, dinov2_encoder, probe_records, whatsup_layer_probes
from analysis_lib.models.comm_merge import VisionSource, layer_weights, load_toy_llava
from analysis_lib.models.tiny import toy_image_processor
from analysis_lib.scoring.probing import FINE_TARGET
from analysis_lib.toy.layer_probes import (
    cached_layer_probes,
    fine_reading,
    layer_probes,
    llava_token_probes,
    probe_metrics,
    probe_summary,
)
from analysis_lib.toy.pipeline import ssl_vision_model, toy_models
from analysis_lib.toy.toy_recipe import toy_setup
from analysis_lib.toy.toy_runs import (
    CLIP_NAME,
    LLAVA_NAME,
    LM_TOKENS,
    condition_lines,
    evaluation_sets,
    model_scorers,
    run_variants,
    save_chapter_results,
    score_all,
    show,
    stalled_lines,
    train_variants,
    variant_rows,
    variant_table,
)
from analysis_lib.toy.toy_setup import EVAL_SEED, ToySetup, ssl_spec
from analysis_lib.training.ssl_encoder import SSL_TRAIN, initial_encoder, smoke_ssl

PENULTIMATE = "LLaVA: CLIP layer -2 (LLaVA-1.5)"
CLIP_COMM = "LLaVA: CLIP multi-level merge (COMM)"
SSL_ONLY = "LLaVA: SSL (DINO) encoder layer -2"
CLIP_SSL = "LLaVA: CLIP multi-level + SSL deeper layers (COMM)"
SOURCES = {
    PENULTIMATE: VisionSource(),
    CLIP_COMM: VisionSource(merge="comm"),
    SSL_ONLY: VisionSource(encoder="ssl"),
    CLIP_SSL: VisionSource(encoder="clip+ssl", merge="comm"),
}
"""The four vision sources: every LLaVA has the same LM, the same curriculum, checks and caps."""
RETRAINED = [CLIP_COMM, SSL_ONLY, CLIP_SSL]  # PENULTIMATE is chapter 1's cached LLaVA
ORDER = [CLIP_NAME, *SOURCES]
CLIP_ENCODER, SSL_ENCODER = "toy CLIP vision encoder", "toy SSL (DINO) encoder"
UNTRAINED = "the same ViT at its initial weights"  # the baseline both trained encoders start from
COMPARED_PROBES = (
    ("relation", "patch tokens (flattened)", "mlp"),
    ("relation", "CLS token", "mlp"),
    ("cell", "patch token", "mlp"),
    ("shape", "patch token", "linear"),
    (FINE_TARGET, "patch token", "linear"),  # below a patch: the MLP probe reads it at ceiling at every layer
)
"""The probes drawn side by side for the encoders (target, view, probe kind; the notebook tabulates every one)."""
LLAVA_LAYER = 3  # hidden_states index of LLaVA's feature layer (-2 of 4 blocks)
TESTS = ("relation 4-way", "attribute 4-way", "MMVP-style spatial pairs", "MMVP-style colour pairs")


def chapter_setup(clip_steps: int, smoke: bool, source: VisionSource | None = None) -> ToySetup:
    """Chapter 1's toy setup (same CLIP, pre-trained LM and curriculum) with the given vision source (its SSL
    encoder the two-step smoke recipe in a smoke run)."""
    source = source or VisionSource()
    if source.uses_ssl:
        source = dataclasses.replace(source, ssl_smoke=smoke)
    return dataclasses.replace(toy_setup(clip_steps, smoke), vision=source)


@dataclass
class DinoRun:
    """Everything chapter 7 shows: scores per condition, both encoders' layer probes, LLaVA folders per
    vision source and seed, the COMM variants' learned layer weights, timings and the run's config."""

    metrics: pd.DataFrame
    probes: pd.DataFrame
    folders: dict[str, dict[int, Path]]
    weights: pd.DataFrame
    seconds: dict[str, dict[int, float]]
    config: dict
    lm_probes: pd.DataFrame  # per vision source and seed: probes of the image tokens its LM receives


def ssl_layer_probes(
    setup: ToySetup, seed: int, smoke: bool, device: str = "cpu", progress: bool = True, trained: bool = True
) -> pd.DataFrame:
    """Chapter 2's layer-probe table (same fresh scenes, probes and sizes) for one seed's SSL encoder, or with
    ``trained=False`` for the same encoder at its initial weights (the baseline it must beat); cached."""
    cfg = smoke_ssl(SSL_TRAIN) if smoke else SSL_TRAIN

    def encoder() -> torch.nn.Module:
        if trained:
            return ssl_vision_model(setup, seed, device, progress, cfg)[0]
        return initial_encoder(setup.world, setup.clip_size, seed).to(device)

    key, processor = {"ssl": ssl_spec(setup, seed, cfg), "trained": trained}, toy_image_processor(setup.world)
    return cached_layer_probes("ssl-layer-probes", key, setup, seed, smoke, encoder, processor)


def encoder_probes(setup: ToySetup, seed: int, smoke: bool, device: str, progress: bool = True) -> pd.DataFrame:
    """Chapter 2's layer probes of one seed's frozen CLIP, of its SSL encoder and of their common initial weights
    (all cached), ``encoder`` column."""
    models = toy_models(setup, seed, device, progress)
    clip = layer_probes(setup, models, seed, smoke).assign(encoder=CLIP_ENCODER)
    ssl = ssl_layer_probes(setup, seed, smoke, device, progress).assign(encoder=SSL_ENCODER)
    start = ssl_layer_probes(setup, seed, smoke, device, progress, trained=False).assign(encoder=UNTRAINED)
    return pd.concat([clip, ssl, start], ignore_index=True)


def merge_weights(folders: dict[str, dict[int, Path]]) -> pd.DataFrame:
    """The learned per-layer merge weights of every COMM variant and seed: the raw scalar, and its share of
    the stream once scaled by the layer's LayerNorm gain (|weight| x RMS of the gain, normalised per stream)."""
    rows = []
    for variant, by_seed in folders.items():
        if SOURCES[variant].merge != "comm":
            continue
        for seed, folder in by_seed.items():
            llava = load_toy_llava(folder)
            n_blocks = llava.config.vision_config.num_hidden_layers
            norms = iter(llava.model.multi_modal_projector.norms)
            for (layers, _), weights in zip(SOURCES[variant].streams(n_blocks), layer_weights(llava)):
                gains = np.array([next(norms).weight.detach().pow(2).mean().sqrt().item() for _ in layers])
                scaled = np.abs(weights) * gains
                stream = "CLIP" if layers[0] <= n_blocks else "SSL (then its MLP)"
                blocks = [(layer - 1) % (n_blocks + 1) + 1 for layer in layers]  # the block within its own tower
                for block, weight, share in zip(blocks, weights, scaled / scaled.sum()):
                    rows.append({"variant": variant, "seed": seed, "stream": stream, "layer": block,
                                 "weight": weight, "share": share})  # fmt: skip
    return pd.DataFrame(rows)


def lm_token_probes(setup: ToySetup, folders: dict[str, dict[int, Path]], smoke: bool) -> pd.DataFrame:
    """Per LLaVA vision source and seed: the per-token probes of the image tokens its LM receives (colour, shape,
    cell and the sub-patch offset; cached), ``condition`` column."""
    tables = [llava_token_probes(setup, folder, seed, smoke).assign(condition=name)
              for name, by_seed in folders.items() for seed, folder in sorted(by_seed.items())]  # fmt: skip
    return pd.concat(tables, ignore_index=True)


def clip_to_dino_experiment(
    seeds: list[int], device: str, clip_steps: int, smoke: bool, progress: bool = True, workers: int = 0
) -> DinoRun:
    """Per seed: both encoders' layer probes; CLIP and chapter 1's LLaVA scored on chapter 1's sets; then each
    retrained vision source's LLaVA (same LM, curriculum, checks and caps) scored with VQAScore. The LLaVAs and SSL
    encoders not cached are trained first, in ``workers`` processes."""
    setup = chapter_setup(clip_steps, smoke)
    setups = {name: chapter_setup(clip_steps, smoke, SOURCES[name]) for name in RETRAINED}
    train_variants(setups, seeds, setup, device, progress, workers)
    bench_dir = evaluation_sets(setup, smoke)
    records, probes, seconds, folders = [], [], {"probes and scoring": {}}, {PENULTIMATE: {}}
    for seed in seed_progress(seeds, "07_clip_to_dino"):
        start = time.perf_counter()
        probes.append(encoder_probes(setup, seed, smoke, device, progress))
        models = toy_models(setup, seed, device, progress)
        scorers = model_scorers(models)
        rows = score_all({CLIP_NAME: scorers[CLIP_NAME], PENULTIMATE: scorers[LLAVA_NAME]}, bench_dir, seed)
        records += [{**r, "condition": r["model"]} for r in rows]
        seconds["probes and scoring"][seed], folders[PENULTIMATE][seed] = (
            time.perf_counter() - start,
            models.folders["llava"],
        )
    variants = run_variants(setups, seeds, bench_dir, setup, device, progress)
    metrics = pd.concat([pd.DataFrame(records), variants.metrics.assign(model=LLAVA_NAME)], ignore_index=True)
    config = {
        "parameters": {"seeds": seeds, "device": device, "clip_steps": clip_steps, "smoke": smoke},
        "eval_seed": EVAL_SEED,
        "setups": {name: dataclasses.asdict(s) for name, s in setups.items()},
    }
    folders |= variants.folders
    start = time.perf_counter()
    lm_probes = lm_token_probes(setup, folders, smoke)
    seconds["LM image-token probes"] = {seeds[-1]: time.perf_counter() - start}
    return DinoRun(metrics, pd.concat(probes, ignore_index=True), folders, merge_weights(folders),
                   {**seconds, **variants.seconds}, config, lm_probes)  # fmt: skip


def comparison(run: DinoRun) -> pd.DataFrame:
    """Relations, attributes and pairs per condition (mean over seeds, 95% CI), conditions in the chapter's order."""
    return variant_table(run.metrics, ORDER, TESTS)


def encoder_probe_summary(run: DinoRun) -> pd.DataFrame:
    """Chapter 2's probe summary (mean over seeds with its 95% CI) per encoder."""
    return pd.concat([probe_summary(group).assign(encoder=encoder)
                      for encoder, group in run.probes.groupby("encoder", sort=False)], ignore_index=True)  # fmt: skip


def lm_probe_summary(run: DinoRun) -> pd.DataFrame:
    """The probes of the image tokens each LLaVA's LM receives, per vision source (mean over seeds, 95% interval,
    k of n seeds past the majority class + 10 points), vision sources in the chapter's order."""
    keys = ("target", "view", "probe")
    parts = [probe_summary(run.lm_probes[run.lm_probes.condition == name], keys).assign(condition=name)
             for name in SOURCES if name in set(run.lm_probes.condition)]  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def lm_probe_lines(summary: pd.DataFrame) -> list[str]:
    """Per vision source: how well a linear and an MLP probe read the sub-patch offset from the image tokens its
    LM receives, beside the same linear probe's reading of the object's cell."""
    lines = []
    for name, rows in summary.groupby("condition", sort=False):
        at = rows.set_index(["target", "probe"])
        parts = [f"{kind} probe {show(at.loc[(FINE_TARGET, kind)])}" for kind in ("linear", "mlp")]
        lines.append(f"* {name}: {FINE_TARGET}, {'; '.join(parts)}; its cell, linear probe "
                     f"{at.loc[('cell', 'linear'), 'mean']:.1%}.")  # fmt: skip
    return lines


def probe_comparison_figure(summary: pd.DataFrame) -> plt.Figure:
    """The probes of ``COMPARED_PROBES`` against layer, the encoders side by side (error bars: 95% CI over seeds;
    dotted: majority class)."""
    fig, axes = plt.subplots(1, len(COMPARED_PROBES), figsize=(3.1 * len(COMPARED_PROBES), 3.3), sharey=True)
    colours = model_palette([CLIP_NAME, SSL_ENCODER, UNTRAINED])
    colours[CLIP_ENCODER] = colours.pop(CLIP_NAME)
    for ax, (target, view, kind) in zip(axes, COMPARED_PROBES):
        mine = summary[(summary.target == target) & (summary.view == view) & (summary.probe == kind)]
        for encoder, line in mine.groupby("encoder", sort=False):
            err = [line["mean"] - line["ci95_low"], line["ci95_high"] - line["mean"]]
            ax.errorbar(line["layer"], line["mean"], yerr=err, color=colours[encoder], capsize=2, marker="o",
                        markersize=3, label=encoder)  # fmt: skip
        majority = mine.groupby("layer")["majority class"].mean()
        ax.plot(majority.index, majority.values, color="grey", linestyle=":", linewidth=1, label="majority class")
        ax.set_title(f"{target}: {kind} probe\non the {view}", fontsize=9)
        ax.set_xlabel("encoder layer (0 = embeddings)")
        ax.set_xticks(sorted(mine["layer"].unique()))
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("probe accuracy (held-out scenes)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def weight_summary(weights: pd.DataFrame) -> pd.DataFrame:
    """Per COMM variant, stream and layer: the learned weight and its gain-scaled share, mean over seeds
    with the per-seed values."""
    rows = []
    for (variant, stream, layer), group in weights.groupby(["variant", "stream", "layer"], sort=False):
        group = group.sort_values("seed")
        rows.append({"variant": variant, "stream": stream, "layer": layer, "weight": group["weight"].mean(),
                     "share": group["share"].mean(),
                     "share per seed": ", ".join(f"{v:.0%}" for v in group["share"])})  # fmt: skip
    return pd.DataFrame(rows)


def weights_figure(weights: pd.DataFrame) -> plt.Figure:
    """The gain-scaled share of each layer in each COMM stream, one bar per seed."""
    panels = list(dict.fromkeys(zip(weights["variant"], weights["stream"])))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False)
    for ax, (variant, stream) in zip(axes[0], panels):
        mine = weights[(weights.variant == variant) & (weights.stream == stream)]
        table = mine.pivot(index="layer", columns="seed", values="share")
        table.plot.bar(ax=ax, rot=0, legend=ax is axes[0, 0], width=0.75)
        ax.set_title(f"{variant.removeprefix('LLaVA: ')}\n{stream} stream", fontsize=8)
        ax.set_xlabel("encoder block")
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("share of the stream's merge")
    if axes[0, 0].get_legend() is not None:
        axes[0, 0].legend(title="seed", fontsize=7, title_fontsize=7)
    fig.tight_layout()
    return fig


def target_checks(table: pd.DataFrame, probe_table: pd.DataFrame, lm_summary: pd.DataFrame) -> pd.DataFrame:
    """The chapter's targets, set before the run (claim 7), each marked met or not on the seed means (``lm_summary``:
    ``lm_probe_summary``)."""
    mean = {(r["test"], r["condition"]): r["mean"] for r in table.to_dict("records")}
    offset = lm_summary[(lm_summary.target == FINE_TARGET) & (lm_summary.probe == "linear")]
    offset = offset.set_index("condition")["mean"]
    probe = probe_table.set_index(["encoder", "target", "view", "probe", "layer"])["mean"].sort_index()
    cell = ("cell", "patch token", "mlp")
    rel, pairs = "relation 4-way", "MMVP-style spatial pairs"
    checks = [
        ("CLIP: the patch-token cell probe (MLP) at a shallow layer (1 or 2) >= at the last layer (4)",
         max(probe.loc[(CLIP_ENCODER, *cell, n)] for n in (1, 2)) - probe.loc[(CLIP_ENCODER, *cell, 4)],
         lambda v: v >= 0),
        ("SSL encoder: the MLP relation probe on flattened patch tokens at LLaVA's layer >= 80%",
         probe.loc[(SSL_ENCODER, "relation", "patch tokens (flattened)", "mlp", LLAVA_LAYER)], lambda v: v >= 0.8),
        ("CLIP multi-level merge minus CLIP layer -2, relation 4-way, >= 0",
         mean[(rel, CLIP_COMM)] - mean[(rel, PENULTIMATE)], lambda v: v >= 0),
        ("SSL encoder minus CLIP layer -2, MMVP-style spatial pairs, >= 0 (SSL beats CLIP on fine detail)",
         mean[(pairs, SSL_ONLY)] - mean[(pairs, PENULTIMATE)], lambda v: v >= 0),
        ("CLIP + SSL (COMM) minus CLIP multi-level merge, relation 4-way, >= 0 (adding DINO helps)",
         mean[(rel, CLIP_SSL)] - mean[(rel, CLIP_COMM)], lambda v: v >= 0),
        ("CLIP + SSL (COMM) minus CLIP layer -2: the sub-patch offset in the image tokens the LM receives (linear "
         "probe), >= 0 (merging passes on more fine detail)",
         offset[CLIP_SSL] - offset[PENULTIMATE], lambda v: v >= 0),
    ]  # fmt: skip
    return pd.DataFrame([{"target": t, "value": v, "met": bool(ok(v))} for t, v, ok in checks])


def winners(table: pd.DataFrame) -> list[str]:
    """Per test, the LLaVA vision source with the highest seed mean, and whether its 95% CI clears the runner-up's."""
    lines = []
    for test in TESTS:
        rows = table[(table.test == test) & table.condition.isin(list(SOURCES))].sort_values("mean", ascending=False)
        if len(rows) < 2:
            continue
        best, second = rows.iloc[0], rows.iloc[1]
        apart = "its 95% CI clears" if best["ci95_low"] > second["ci95_high"] else "its 95% CI overlaps"
        lines.append(f"* {test}: best {best['condition']} ({best['mean']:.1%}); {apart} the runner-up "
                     f"{second['condition']} ({second['mean']:.1%}).")  # fmt: skip
    return lines


def weight_lines(weights: pd.DataFrame) -> list[str]:
    """Per COMM stream: the layer with the largest mean share, and how often it is the top layer across seeds."""
    lines = []
    for (variant, stream), group in weights.groupby(["variant", "stream"], sort=False):
        mean = group.groupby("layer")["share"].mean()
        top = group.loc[group.groupby("seed")["share"].idxmax(), "layer"]
        shares = ", ".join(f"block {layer} {share:.0%}" for layer, share in mean.items())
        tops = ", ".join(str(v) for v in top)
        lines.append(f"* {variant}, {stream} stream: mean shares {shares}; the top block per seed: {tops} "
                     f"(the layer LLaVA-1.5 reads is block {LLAVA_LAYER}).")  # fmt: skip
    return lines


def probe_lines(probe_table: pd.DataFrame) -> list[str]:
    """Per compared probe and encoder: its best layer, and its accuracy at LLaVA's layer."""
    lines = []
    for target, view, kind in COMPARED_PROBES:
        for encoder in (CLIP_ENCODER, SSL_ENCODER, UNTRAINED):
            rows = probe_table[(probe_table.encoder == encoder) & (probe_table.target == target)
                               & (probe_table.view == view) & (probe_table.probe == kind)]  # fmt: skip
            if rows.empty:
                continue
            best, at = rows.loc[rows["mean"].idxmax()], rows[rows.layer == LLAVA_LAYER].iloc[0]
            lines.append(f"* {encoder}, {kind} probe for {target} on the {view}: best at layer {best['layer']} "
                         f"({best['mean']:.1%}), at LLaVA's layer {LLAVA_LAYER} {at['mean']:.1%} "
                         f"(95% CI {at['ci95_low']:.1%}-{at['ci95_high']:.1%}).")  # fmt: skip
    return lines


def fine_readings(probe_table: pd.DataFrame) -> str:
    """``layer_probes.fine_reading`` for each encoder: what its layers keep of a detail smaller than a patch."""
    encoders = (CLIP_ENCODER, SSL_ENCODER, UNTRAINED)
    lines = [fine_reading(probe_table[probe_table.encoder == e], LLAVA_LAYER, e) for e in encoders]
    return "\n\n".join(line for line in lines if line)


def passed_seed_lines(metrics: pd.DataFrame, transition_table: pd.DataFrame) -> list[str]:
    """Per vision source with a stalled seed: its relation 4-way and spatial-pair accuracy on the stalled
    seeds and on the seeds whose last curriculum stage passed its check."""
    checked = transition_table[transition_table.target.notna()]
    last = checked.groupby(["variant", "seed"], sort=False).tail(1)
    rows = variant_rows(metrics, ORDER, ("relation 4-way", "MMVP-style spatial pairs"))
    lines = []
    for variant, group in last.groupby("variant", sort=False):
        stalled = set(group.loc[group["passed at"].isna(), "seed"])
        if not stalled:
            continue
        mine = rows[rows.condition == variant]
        parts = []
        for test, values in mine.groupby("test", sort=False):
            done = values[~values.seed.isin(stalled)]["value"]
            stuck = values[values.seed.isin(stalled)]["value"].mean()
            passed = f"{done.mean():.1%} on the {len(done)} that passed" if len(done) else "no seed passed"
            parts.append(f"{test} {stuck:.1%} on the stalled seed(s), {passed}")
        lines.append(f"* {variant}: " + "; ".join(parts) + ".")
    return lines


def findings(
    table: pd.DataFrame, probe_table: pd.DataFrame, weights: pd.DataFrame, transition_table, metrics: pd.DataFrame
) -> str:
    """The chapter's reading of its own numbers, as Markdown written from the summary tables."""
    lines = (
        condition_lines(table, ORDER) + stalled_lines(transition_table) + passed_seed_lines(metrics, transition_table)
    )
    return "\n".join(lines + winners(table) + weight_lines(weights) + probe_lines(probe_table))


def pairs_line(table: pd.DataFrame) -> str:
    """MMVP-style spatial pairs per LLaVA vision source, mean (95% CI; per seed)."""
    rows = {r["condition"]: r for r in table.to_dict("records") if r["test"] == "MMVP-style spatial pairs"}
    return "\n".join(f"* {name}: {show(rows[name])}" for name in SOURCES if name in rows)


def save_results(run: DinoRun, scale: str, root: Path | None, total_seconds: float, tables: dict) -> Path:
    """Write ``metrics.csv`` (scores, both encoders' probes, the merge weights) and ``run.json`` under
    ``<root>/07_clip_to_dino/<scale>[-smoke]``."""
    probes = [probe_metrics(group).assign(model=f"{encoder} (frozen)")
              for encoder, group in run.probes.groupby("encoder", sort=False)]  # fmt: skip
    weights = pd.DataFrame({
        "model": LLAVA_NAME, "condition": run.weights.variant, "benchmark": "COMM merge weights",
        "metric": [f"{s} block {n} share" for s, n in zip(run.weights.stream, run.weights.layer)],
        "seed": run.weights.seed, "value": run.weights.share,
    }) if len(run.weights) else pd.DataFrame()  # fmt: skip
    lm, models = run.lm_probes, run.metrics.drop_duplicates("condition").set_index("condition")["model"]
    lm_probes = pd.DataFrame({
        "model": lm.condition.map(models), "condition": lm.condition, "benchmark": LM_TOKENS,
        "metric": [f"{target}, {kind} probe" for target, kind in zip(lm.target, lm.probe)], "seed": lm.seed,
        "value": lm.accuracy, "ci_low": np.nan, "ci_high": np.nan, "n_units": lm.n_test,
    })  # fmt: skip
    metrics = pd.concat([run.metrics, *probes, weights, lm_probes], ignore_index=True)
    extra = {"total_wall_seconds": total_seconds, "wall_seconds": run.seconds}
    return save_chapter_results("07_clip_to_dino", scale, root, metrics, run.config, extra, tables)


FULL_CLIP, FULL_DINO = "clip-l14-336", "dinov2-large"
"""The encoders the full-scale probes compare: transformers' copy of the paper's CLIP ViT-L/14-336 and DINOv2-L/14
(COMM's DINOv2; registry names, or folders)."""


def probes_full(
    whatsup_root: str, clip_model: str = FULL_CLIP, dino_model: str = FULL_DINO, device: str = "auto",
    allow_download: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """Layer-wise linear probes of CLIP's and DINOv2's frozen layers on the What'sUp Controlled images under
    ``whatsup_root`` (``analysis_lib.full.whatsup_probes``: relation and object pair from the CLS token, the mean patch
    token and the pooled patch grid), ``encoder`` column."""
    encoders = [clip_encoder(clip_model, device, allow_download), dinov2_encoder(dino_model, device, allow_download)]
    return whatsup_layer_probes(encoders, load_whatsup(Path(whatsup_root), only_present=True))


def save_full_results(probes: pd.DataFrame, parameters: dict, root: Path | None, total_seconds: float) -> Path:
    """Write a full-scale run's probes (``metrics.csv``, ``whatsup_probes.probe_records``) and ``run.json`` (its
    parameters) under ``<root>/07_clip_to_dino/full``."""
    config, extra = {"parameters": {**parameters, "smoke": False}}, {"total_wall_seconds": total_seconds}
    return save_chapter_results("07_clip_to_dino", "full", root, probe_records(probes), config, extra, {})
