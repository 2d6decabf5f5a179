"""Chapter 7's tables and figures on made-up numbers: targets and winners read the right cells, the COMM
weight summary and figures hold every layer, and no figure text overlaps another; its full-scale probes on tiny
random CLIP and DINOv2 models and What'sUp fixtures."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_plots import overlaps, text_boxes
from test_registry import offline  # noqa: F401  (autouse: no network, empty HF cache and models folder)
from transformers import BitImageProcessor, Dinov2Config, Dinov2Model
from upstream_fixtures import add_whatsup_pair

from analysis_lib.book import runner as book
from analysis_lib.chapters import ch07_clip_to_dino as ch07
from analysis_lib.scoring.probing import FINE_TARGET
from analysis_lib.toy.toy_runs import CLIP_NAME


def _table(means: dict[str, float]) -> pd.DataFrame:
    """A variant table with every test at ``means[condition]`` and CIs of +-2 points."""
    return pd.DataFrame([{"test": t, "condition": c, "mean": m, "ci95_low": m - 0.02, "ci95_high": m + 0.02,
                          "per seed": "", "chance": 0.25} for t in ch07.TESTS for c, m in means.items()])  # fmt: skip


def _probes() -> pd.DataFrame:
    rows = []
    for encoder, shift in ((ch07.CLIP_ENCODER, 0.0), (ch07.SSL_ENCODER, 0.05)):
        for target, view, _ in ch07.COMPARED_PROBES:
            for probe in ("linear", "mlp"):
                for layer in range(5):
                    mean = 0.9 - 0.05 * layer + shift
                    rows.append({"encoder": encoder, "target": target, "view": view, "probe": probe, "layer": layer,
                                 "mean": mean, "ci95_low": mean - 0.01, "ci95_high": mean + 0.01,
                                 "majority class": 0.25})  # fmt: skip
    return pd.DataFrame(rows)


def _weights() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for variant, streams in ((ch07.CLIP_COMM, [("CLIP", [1, 2, 3, 4])]),
                             (ch07.CLIP_SSL, [("CLIP", [1, 2, 3, 4]), ("SSL (then its MLP)", [3, 4])])):  # fmt: skip
        for seed in range(3):
            for stream, layers in streams:
                shares = rng.dirichlet(np.ones(len(layers)))
                rows += [{"variant": variant, "seed": seed, "stream": stream, "layer": n, "weight": s, "share": s}
                         for n, s in zip(layers, shares)]  # fmt: skip
    return pd.DataFrame(rows)


def test_targets_read_the_variants_and_probes():
    table = _table(
        {CLIP_NAME: 0.3, ch07.PENULTIMATE: 0.9, ch07.CLIP_COMM: 0.92, ch07.SSL_ONLY: 0.8, ch07.CLIP_SSL: 0.9}
    )
    lm = pd.DataFrame({"condition": list(ch07.SOURCES), "target": FINE_TARGET, "probe": "linear",
                       "mean": [0.6, 0.7, 0.8, 0.55]})  # fmt: skip
    targets = ch07.target_checks(table, _probes(), lm).set_index("target")
    assert targets["met"].tolist() == [True, True, True, False, False, False]
    assert targets["value"].iloc[5] == pytest.approx(-0.05)
    assert targets["value"].iloc[2] == pytest.approx(0.02) and targets["value"].iloc[4] == pytest.approx(-0.02)


def test_winners_name_the_best_source_and_whether_it_is_clear():
    lines = ch07.winners(_table({ch07.PENULTIMATE: 0.9, ch07.CLIP_COMM: 0.5, ch07.SSL_ONLY: 0.89, ch07.CLIP_SSL: 0.2}))
    assert len(lines) == len(ch07.TESTS)
    assert all(ch07.PENULTIMATE in line and "overlaps the runner-up" in line for line in lines)


def test_weight_summary_and_lines_cover_every_stream_and_layer():
    weights = _weights()
    summary = ch07.weight_summary(weights)
    assert len(summary) == 4 + 4 + 2
    assert summary.groupby(["variant", "stream"])["share"].sum().round(6).eq(1).all()
    assert len(ch07.weight_lines(weights)) == 3


@pytest.mark.parametrize("figure", ["probes", "weights"])
def test_chapter_figures_have_no_overlapping_texts(figure):
    fig = ch07.probe_comparison_figure(_probes()) if figure == "probes" else ch07.weights_figure(_weights())
    assert not overlaps(text_boxes(fig)), overlaps(text_boxes(fig))[:3]
    ch07.plt.close(fig)


def test_passed_seed_lines_split_a_stalled_variant_by_seed():
    metrics = pd.DataFrame([{"model": "LLaVA (VQAScore)", "condition": ch07.SSL_ONLY, "benchmark": "relations",
                             "metric": "4-way individual", "seed": seed, "value": value}
                            for seed, value in ((0, 0.9), (1, 0.4), (2, 1.0))])  # fmt: skip
    transitions = pd.DataFrame([{"variant": ch07.SSL_ONLY, "seed": seed, "stage": "instructions", "target": 0.95,
                                 "passed at": None if seed == 1 else 1000.0} for seed in range(3)])  # fmt: skip
    (line,) = ch07.passed_seed_lines(metrics, transitions)
    assert "relation 4-way 40.0% on the stalled seed(s), 95.0% on the 2 that passed" in line


def test_chapter_runs_at_full_scale_probing_clip_and_dinov2_layers(full_setup, tmp_path):
    for k, (obj1, obj2) in enumerate((("cup", "bowl"), ("book", "lamp"), ("shoe", "box"))):
        add_whatsup_pair(Path(full_setup.whatsup_root), obj1, obj2, seed=10 * k)
    dino = tmp_path / "dinov2"
    Dinov2Model(Dinov2Config(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                             mlp_ratio=2)).save_pretrained(dino)  # fmt: skip
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(dino)
    params = {"scale": "full", "device": "cpu", "whatsup_root": full_setup.whatsup_root,
              "clip_model": full_setup.clip_model, "dino_model": str(dino),
              "results_root": str(tmp_path / "results"), "figures_root": str(tmp_path / "figures")}  # fmt: skip
    book.execute_chapter(book.find_chapter("07"), params, tmp_path / "07.ipynb")
    metrics = pd.read_csv(tmp_path / "results" / "07_clip_to_dino" / "full" / "metrics.csv")
    assert set(metrics.model) == {f"{full_setup.clip_model} (frozen)", f"{dino} (frozen)"}
    assert set(metrics.benchmark) == {"Controlled-A", "Controlled-B"} and metrics.value.between(0, 1).all()
    assert len(metrics) == 2 * (2 + 3) * 3 * 2  # subsets x layers (CLIP 0-1, DINOv2 0-2) x views x targets
