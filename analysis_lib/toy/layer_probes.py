"""Layer-wise probes of the frozen toy encoders (chapters 2 and 7): each encoder's probe table on fresh held-out
scenes (``probing.layer_probe_table``), cached, and its summaries over seeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis_lib.core.cache import cached_artifact
from analysis_lib.models.comm_merge import load_toy_llava
from analysis_lib.models.features import llava_selected_features
from analysis_lib.models.image_tokens import projector_inputs
from analysis_lib.models.tiny import toy_image_processor
from analysis_lib.scoring.probing import (
    FINE_TARGET,
    MLP_HIDDEN,
    PATCH_PROBE_SCENES,
    PATCH_TARGETS,
    PROBE_STEPS,
    layer_probe_table,
    token_probe_table,
)
from analysis_lib.toy.pipeline import ToyModels
from analysis_lib.toy.toy_runs import ABOVE_CHANCE, seed_row
from analysis_lib.toy.toy_setup import EVAL_SEED, ToySetup, fresh_offsets, fresh_pixels

PROBE_SCENES = {"train": 3000, "test": 1000}
SMOKE_PROBE_SCENES = {"train": 64, "test": 32}
LM_INPUT = "image token the LM receives"  # the view of llava_token_probes: a projected image token


def probe_settings(smoke: bool) -> tuple[dict, int, dict]:
    """The fresh scenes' sizes, the probes' steps and the settings every cached probe table is keyed by."""
    sizes = SMOKE_PROBE_SCENES if smoke else PROBE_SCENES
    steps = 5 if smoke else PROBE_STEPS
    settings = {"scenes": sizes, "eval_seed": EVAL_SEED, "mlp_hidden": MLP_HIDDEN, "steps": steps,
                "patch_scenes": PATCH_PROBE_SCENES, "targets": [*PATCH_TARGETS, FINE_TARGET]}  # fmt: skip
    return sizes, steps, settings


def probe_scenes(setup: ToySetup, image_processor, sizes: dict) -> tuple[tuple, tuple]:
    """The probes' fresh disjoint scenes: ``(pixels, scenes, the objects' offsets in their cells)`` to train on,
    then to test on."""
    sets = []
    for split, shift in (("train", 20), ("test", 22)):
        scenes, pixels = fresh_pixels(setup, image_processor, sizes[split], EVAL_SEED + shift)
        sets.append((pixels, scenes, fresh_offsets(setup, scenes, EVAL_SEED + shift)))
    return sets[0], sets[1]


def cached_layer_probes(
    kind: str, key: dict, setup: ToySetup, seed: int, smoke: bool, encoder: Callable[[], torch.nn.Module],
    image_processor,
) -> pd.DataFrame:  # fmt: skip
    """The layer-wise probe table of ``encoder()`` (a frozen vision encoder) on fresh disjoint scenes preprocessed by
    ``image_processor``, cached as ``kind`` under ``key`` and the probes' settings."""
    sizes, steps, settings = probe_settings(smoke)
    probe = {"mlp_hidden": MLP_HIDDEN, "steps": steps, "patch_scenes": PATCH_PROBE_SCENES}
    spec = {**key, "scenes": sizes, "eval_seed": EVAL_SEED, "probe": probe, "probe_seed": seed,
            "targets": settings["targets"]}  # fmt: skip

    def build(folder: Path) -> None:
        (train_px, train_scenes, train_offsets), (test_px, test_scenes, test_offsets) = probe_scenes(
            setup, image_processor, sizes
        )
        train, test, offsets = (train_px, train_scenes), (test_px, test_scenes), (train_offsets, test_offsets)
        table = layer_probe_table(encoder(), train, test, setup.world.grid, seed=seed, steps=steps, offsets=offsets)
        (folder / "probes.csv").write_text(table.to_csv(index=False))

    folder, _ = cached_artifact(kind, spec, build)
    return pd.read_csv(folder / "probes.csv").assign(seed=seed, n_test=sizes["test"])


def layer_probes(setup: ToySetup, models: ToyModels, seed: int, smoke: bool) -> pd.DataFrame:
    """Layer-wise probe table of one seed's frozen CLIP on fresh disjoint scenes (cached)."""
    key, processor = {"clip": setup.clip_spec(seed)}, models.clip_processor.image_processor
    return cached_layer_probes("layer-probes", key, setup, seed, smoke, lambda: models.clip, processor)


@torch.no_grad()
def lm_input_tokens(folder: Path, pixels: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The image tokens the language model of the toy LLaVA saved in ``folder`` (any vision source) receives for
    ``pixels``: its selected vision features through its projector (``N x P x LM width``)."""
    model = load_toy_llava(folder).eval()
    chunks = []
    for start in range(0, len(pixels), batch_size):
        features = llava_selected_features(model, pixels[start : start + batch_size])
        chunks.append(model.model.multi_modal_projector(projector_inputs(model, features)))
    return torch.cat(chunks)


def llava_token_probes(setup: ToySetup, folder: Path, seed: int, smoke: bool) -> pd.DataFrame:
    """Per-token probes (colour, shape, cell, ``FINE_TARGET``) of the image tokens the LM of the toy LLaVA in
    ``folder`` receives, on the layer probes' fresh scenes; cached under the LLaVA's own cache key."""
    sizes, steps, settings = probe_settings(smoke)
    spec = {"llava": f"{folder.parent.name}/{folder.name}", "probe_seed": seed, **settings}

    def build(out: Path) -> None:
        train, test = probe_scenes(setup, toy_image_processor(setup.world), sizes)
        tokens = [(lm_input_tokens(folder, pixels), scenes, offsets) for pixels, scenes, offsets in (train, test)]
        table = token_probe_table(*tokens, setup.world.grid, LM_INPUT, seed=seed, steps=steps)
        (out / "probes.csv").write_text(table.to_csv(index=False))

    out, _ = cached_artifact("llava-token-probes", spec, build)
    return pd.read_csv(out / "probes.csv").assign(seed=seed, n_test=sizes["test"])


def probe_summary(probes: pd.DataFrame, keys: tuple[str, ...] = ("target", "view", "probe", "layer")) -> pd.DataFrame:
    """Probe accuracy per ``keys`` (layer, view, target and probe kind): ``seed_row`` (its chance: the majority
    class) and the majority class."""
    keys, rows = list(keys), []
    for values, group in probes.groupby(keys, sort=False):
        majority = group["majority class"].mean()
        summary = seed_row(group.rename(columns={"accuracy": "value"}), majority)
        rows.append(dict(zip(keys, values)) | summary | {"majority class": majority})
    return pd.DataFrame(rows)


def probe_metrics(probes: pd.DataFrame) -> pd.DataFrame:
    """The probe table in the tidy metrics format (model = the frozen encoder, one row per seed)."""
    return pd.DataFrame({
        "model": "toy CLIP vision encoder (frozen)",
        "condition": [f"{p} probe on {v}, layer {n}" for p, v, n in zip(probes.probe, probes.view, probes.layer)],
        "benchmark": "layer probes", "metric": probes.target, "seed": probes.seed, "value": probes.accuracy,
        "ci_low": np.nan, "ci_high": np.nan, "n_units": probes.n_test,
    })  # fmt: skip


def fine_reading(summary: pd.DataFrame, llava_layer: int, encoder: str = "the frozen CLIP") -> str:
    """What ``encoder``'s layers keep of a detail smaller than a patch (``FINE_TARGET``), from ``probe_summary``'s
    rows: per probe kind, the embeddings (layer 0), the best layer and LLaVA's layer, with k of n seeds past the
    majority class + 10 points."""
    fine = summary[summary.target == FINE_TARGET]
    if fine.empty:
        return ""
    parts = []
    for kind, rows in fine.groupby("probe", sort=False):
        at = rows.set_index("layer")
        best = int(at["mean"].idxmax())
        cells = [f"layer {n} {at.loc[n, 'mean']:.1%} ({at.loc[n, ABOVE_CHANCE]})"
                 for n in dict.fromkeys((0, best, llava_layer))]  # fmt: skip
        parts.append(f"{kind} probe: {', '.join(cells)}, best layer {best}")
    majority = fine["majority class"].mean()
    return (f"A detail smaller than a patch: the {FINE_TARGET} of an object (its horizontal offset, 0-2 pixels, drawn "
            f"at random and never named in any text), probed from the object's token of {encoder} (majority class "
            f"{majority:.1%}; in brackets, seeds past it by 10 points): {'; '.join(parts)}.")  # fmt: skip
