"""Every figure of the book is readable: no text of a figure (tick labels, titles, legends, colour-bar labels)
overlaps another, models keep their colours across chapters, and chance lines are labelled."""

import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest

from analysis_lib.book import plots

matplotlib.use("Agg")

MODELS = ["CLIP (cosine)", "LLaVA: all patch tokens (LLaVA-1.5)", "LLaVA: CLS token only",
          "LLaVA: image tokens' LM positions permuted (ablated at test only)"]  # fmt: skip
TESTS = ["relation 4-way", "relation axis (4-way choice on the right axis)", "relation 2-way", "relation 2-way pair",
         "attribute 4-way", "MMVP-style spatial pairs", "MMVP-style colour pairs"]  # fmt: skip


def _accuracy() -> plots.plt.Figure:
    rng = np.random.default_rng(0)
    rows = [{"test": t, "model": m, "seed": s, "value": rng.random()} for t in TESTS for m in MODELS for s in range(3)]
    return plots.accuracy_bars(pd.DataFrame(rows), {t: 0.25 for t in TESTS}, "A long title of the accuracy figure")


def _many_conditions() -> plots.plt.Figure:
    """Sixteen long condition names (chapter 3's figure): the legend must not squash the axes or repeat colours."""
    names = [f"LLaVA: ablation number {i} with a long description (ablated at test only)" for i in range(16)]
    rows = [{"test": t, "model": m, "seed": s, "value": 0.5} for t in TESTS[:2] for m in names for s in range(2)]
    fig = plots.accuracy_bars(pd.DataFrame(rows), {t: 0.25 for t in TESTS}, "Many conditions")
    assert fig.axes[0].get_window_extent().height >= 1.5 * fig.dpi  # inches: the bars stay readable
    assert len(set(plots.model_palette(names).values())) == len(names)
    return fig


def _attribution() -> plots.plt.Figure:
    maps = {"CLIP: cos(true) - cos(foil)": np.full((3, 3), 1.5e-5), "LLaVA: VQAScore(true) - VQAScore(foil)":
            np.linspace(-2e-4, 3e-4, 9).reshape(3, 3)}  # fmt: skip
    return plots.attribution_figure(np.zeros((24, 24, 3)), maps, 'true: "a red circle left of a blue square"')


def _transitions() -> plots.plt.Figure:
    stages = ["list", "describe", "instructions"]
    curves, transitions = [], []
    for variant, seed in itertools.product(MODELS[1:3], range(3)):
        start = 0
        for stage in stages:
            curves += [{"variant": variant, "seed": seed, "stage": stage, "step": start + k * 100, "value": k / 10}
                       for k in range(1, 8)]  # fmt: skip
            passed = start + 600 if seed else None
            transitions.append({"variant": variant, "seed": seed, "stage": stage, "starts at": start, "steps": 700,
                                "passed at": passed, "final check": 0.7, "target": 0.95})  # fmt: skip
            start += 700
    return plots.transition_figure(pd.DataFrame(curves), pd.DataFrame(transitions))


def _probes() -> plots.plt.Figure:
    rows = [{"target": target, "view": view, "probe": probe, "layer": layer, "mean": 0.5, "ci95_low": 0.4,
             "ci95_high": 0.6, "majority class": 0.25}
            for target in ("relation", "colour", "shape", "cell") for view in ("CLS token", "flattened patch tokens")
            for probe in ("linear", "MLP") for layer in range(5)]  # fmt: skip
    return plots.probe_layers_figure(pd.DataFrame(rows))


def _shares() -> plots.plt.Figure:
    rows = [{"condition": c, "objects": n, "region": r, "seed": s, "value": 0.3}
            for c in ("VQAScore: t2v question (default)", "caption likelihood: no question")
            for n in (2, 3, 4) for r in ("named objects", "other objects", "background") for s in range(3)]  # fmt: skip
    return plots.share_bars(pd.DataFrame(rows), "Share of |attribution| of the true caption's log-score, by region")


def _forest() -> plots.plt.Figure:
    rows = [{"label": f"claim {i}: LLaVA, all patch tokens - LLaVA, CLS token only, relation 4-way", "effect": 0.3,
             "ci95_low": 0.1, "ci95_high": 0.5, "verdict": v}
            for i, v in enumerate(plots.VERDICT_COLOURS)]  # fmt: skip
    return plots.effect_forest(pd.DataFrame(rows), 0.1, "The claims at a glance (toy scale)")


FIGURES = {"accuracy_bars": _accuracy, "accuracy_bars_many": _many_conditions, "attribution_figure": _attribution,
           "transition_figure": _transitions,
           "probe_layers_figure": _probes, "share_bars": _shares, "effect_forest": _forest}  # fmt: skip


def drawn_texts(fig) -> list:
    """The texts a drawn figure shows: tick labels of the ticks inside each axis's view (matplotlib keeps
    labels of ticks outside it, undrawn), and every other visible text."""
    fig.canvas.draw()
    axes = [axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)]
    every_tick = {id(label) for axis in axes for tick in axis.get_major_ticks() + axis.get_minor_ticks()
                  for label in (tick.label1, tick.label2)}  # fmt: skip
    texts = [t for t in fig.findobj(matplotlib.text.Text) if id(t) not in every_tick]
    texts += [label for axis in axes for tick in axis._update_ticks() for label in (tick.label1, tick.label2)]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def text_boxes(fig) -> list[tuple[str, object]]:
    """Every text a drawn figure shows, with its bounding box in pixels."""
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in drawn_texts(fig)]


def overlaps(boxes) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes overlap by more than a pixel each way."""
    found = []
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        if width > 1 and height > 1:
            found.append((a, b))
    return found


@pytest.mark.parametrize("name", FIGURES)
def test_no_text_overlaps_another(name):
    fig = FIGURES[name]()
    assert not overlaps(text_boxes(fig)), f"{name}: overlapping texts {overlaps(text_boxes(fig))[:3]}"
    plots.plt.close(fig)


def test_overlap_check_catches_crowded_tick_labels():
    fig, ax = plots.plt.subplots(figsize=(2, 2))
    ax.set_xticks(range(6), [f"a long tick label {i}" for i in range(6)])
    assert overlaps(text_boxes(fig))
    plots.plt.close(fig)


def test_attribution_colour_bars_carry_no_offset_text():
    fig = _attribution()
    fig.canvas.draw()
    offsets = [axis.get_offset_text().get_text() for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)]
    assert offsets == [""] * len(offsets)  # tiny values keep their magnitude in each tick label instead
    plots.plt.close(fig)


def test_models_keep_their_colours_across_chapters():
    first = plots.model_palette(["CLIP (cosine)", "LLaVA (VQAScore)", "NegCLIP"])
    second = plots.model_palette(["LLaVA: CLS token only", "LLaVA: all patch tokens (LLaVA-1.5)", "CLIP (cosine)"])
    assert first["CLIP (cosine)"] == second["CLIP (cosine)"] == plots.CLIP_COLOUR
    assert first["LLaVA (VQAScore)"] == second["LLaVA: all patch tokens (LLaVA-1.5)"] == plots.LLAVA_COLOUR
    assert len({first["NegCLIP"], second["LLaVA: CLS token only"], plots.CLIP_COLOUR, plots.LLAVA_COLOUR}) == 3


def test_chance_lines_are_in_the_legend():
    fig = _accuracy()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert plots.CHANCE_LABEL in labels
    plots.plt.close(fig)
