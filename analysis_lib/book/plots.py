"""Figures of the book (seaborn / matplotlib), saved to ``figures/``."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np
import pandas as pd
import seaborn as sns

FIGURES_DIR = Path(__file__).resolve().parents[2] / "figures"
PALETTE = sns.color_palette("colorblind", 10)
CLIP_COLOUR, LLAVA_COLOUR = PALETTE[0], PALETTE[1]
CHANCE_LABEL = "chance (random guessing)"
CHANCE_STYLE = {"colors": "grey", "linestyles": "dashed", "linewidth": 1}


def is_clip(name: str) -> bool:
    """The toy CLIP scored by cosine, as every chapter names it."""
    return name == "CLIP (cosine)"


def is_llava_as_usual(name: str) -> bool:
    """The chapter's LLaVA as LLaVA-1.5 is (VQAScore, patch tokens, raster positions), by the book's naming:
    ``LLaVA (VQAScore)``, a name ending in ``(LLaVA-1.5)``, or one marked ``(default)`` / ``the chapter's LLaVA``."""
    return (name == "LLaVA (VQAScore)" or name.endswith("(LLaVA-1.5)") or "(default)" in name
            or "the chapter's LLaVA" in name)  # fmt: skip


def model_palette(names: list[str]) -> dict[str, tuple]:
    """Colours that mean the same across the book: CLIP blue, the usual LLaVA orange, every other model or
    condition the next colour of the colour-blind palette, in the order given."""
    others = iter(PALETTE[2:] + sns.color_palette("tab20", 20)[1::2] + sns.color_palette("tab20b", 20))  # no repeats
    palette = {}
    for name in names:
        palette[name] = CLIP_COLOUR if is_clip(name) else LLAVA_COLOUR if is_llava_as_usual(name) else next(others)
    return palette


def chance_handle() -> plt.Line2D:
    """The legend entry of the dashed chance lines."""
    return plt.Line2D([], [], color="grey", linestyle="dashed", linewidth=1, label=CHANCE_LABEL)


def plain_colorbar(fig: plt.Figure, mappable, ax: plt.Axes) -> None:
    """A colour bar whose tick labels carry their own magnitude (no ``1e-4`` offset text above the bar to
    cover the panel's title)."""
    bar = fig.colorbar(mappable, ax=ax, fraction=0.046, format=ticker.FuncFormatter(lambda v, _: f"{v:.2g}"))
    bar.ax.tick_params(labelsize=8)


def save(fig: plt.Figure, name: str, folder: Path | None = None) -> None:
    """Save a figure as ``<folder>/<name>.png`` (``figures/`` by default); returns nothing, so that a chapter
    cell ending with it shows the figure, not a path."""
    folder = Path(folder or FIGURES_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=130, bbox_inches="tight")


def accuracy_bars(
    metrics: pd.DataFrame,
    chance: dict[str, float] | None = None,
    title: str = "Same frozen encoder, two ways of reading it (dashed: chance)",
) -> plt.Figure:
    """Bar per (test, model): mean over seeds, error bar = 95% CI across seeds, dots = seeds."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    order = list(dict.fromkeys(metrics["test"]))
    palette = model_palette(list(dict.fromkeys(metrics["model"])))
    sns.barplot(
        data=metrics, x="test", y="value", hue="model", order=order, errorbar=("ci", 95), ax=ax, alpha=0.85,
        capsize=0.1, palette=palette,
    )  # fmt: skip
    sns.stripplot(
        data=metrics,
        x="test",
        y="value",
        hue="model",
        order=order,
        dodge=True,
        ax=ax,
        palette="dark:black",
        size=3,
        legend=False,
    )
    for i, test in enumerate(order):
        if chance and test in chance:
            ax.hlines(chance[test], i - 0.4, i + 0.4, **CHANCE_STYLE)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_xlabel("")
    ax.set_xticks(range(len(order)), [textwrap.fill(test, 13) for test in order], fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    if chance:
        handles, labels = [*handles, chance_handle()], [*labels, CHANCE_LABEL]
    labels = [textwrap.fill(label, 60) for label in labels]  # long condition names wrap rather than widen the figure
    legend_lines = sum(label.count("\n") + 1 for label in labels) / 2  # two columns
    fig.set_figheight(max(3.8, 3.0 + 0.25 * legend_lines))  # the axes keep their height however long the legend
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, fontsize=8, frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def attribution_figure(image: np.ndarray, maps: dict[str, np.ndarray], title: str) -> plt.Figure:
    """The image beside one patch-attribution heat map per scorer (shared colour scale per map)."""
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(3 * (1 + len(maps)), 3.2))
    axes[0].imshow(image)
    axes[0].set_title("image")
    for ax, (name, values) in zip(axes[1:], maps.items()):
        limit = float(np.abs(values).max()) or 1.0
        shown = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(name, fontsize=9)
        plain_colorbar(fig, shown, ax)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


TARGET_LINE = 0.95  # the instruction stage's held-out check target, drawn on every panel


def transition_figure(curves: pd.DataFrame, transitions: pd.DataFrame) -> plt.Figure:
    """Held-out checks over training, one panel per (variant, seed): each stage's check in its own
    colour, a star where a stage's check passed, a cross where the stage ran to its step cap."""
    variants, seeds = list(dict.fromkeys(curves["variant"])), sorted(set(curves["seed"]))
    stages = list(dict.fromkeys(curves["stage"]))
    colours = dict(zip(stages, sns.color_palette("colorblind", len(stages))))
    fig, axes = plt.subplots(
        len(variants), len(seeds), figsize=(3.2 * len(seeds), 2.3 * len(variants)), sharex=True, sharey=True,
        squeeze=False,
    )  # fmt: skip
    for (row, variant), (col, seed) in itertools.product(enumerate(variants), enumerate(seeds)):
        ax = axes[row, col]
        mine = curves[(curves.variant == variant) & (curves.seed == seed)]
        for stage, points in mine.groupby("stage", sort=False):
            ax.plot(points["step"], points["value"], color=colours[stage], label=stage, linewidth=1.2)
        ends = transitions[(transitions.variant == variant) & (transitions.seed == seed) & transitions.target.notna()]
        for end in ends.to_dict("records"):
            passed = not pd.isna(end["passed at"])
            step = end["passed at"] if passed else end["starts at"] + end["steps"]
            marker = "*" if passed else "x"
            ax.plot(step, end["final check"], marker=marker, color=colours.get(end["stage"], "k"), markersize=9)
        ax.axhline(TARGET_LINE, color="grey", linestyle="dashed", linewidth=0.8)
        ax.set_title(f"seed {seed}", fontsize=9)
        ax.set_ylim(0, 1.02)
    for ax in axes[-1]:
        ax.set_xlabel("LLaVA training step")
    for ax, variant in zip(axes[:, 0], variants):
        ax.set_ylabel(textwrap.fill(variant, 24) + "\n\nheld-out check", fontsize=8)
    handles = [plt.Line2D([], [], color=c, label=s) for s, c in colours.items()]
    target = f"instruction check target {TARGET_LINE:.2f}"
    handles += [plt.Line2D([], [], color="grey", linestyle="dashed", linewidth=0.8, label=target),
                plt.Line2D([], [], color="k", marker="*", linestyle="", label="check passed"),
                plt.Line2D([], [], color="k", marker="x", linestyle="", label="ran to its cap")]  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def probe_layers_figure(probes: pd.DataFrame) -> plt.Figure:
    """Probe accuracy against encoder layer: one panel per target, a line per view, solid = linear and
    dashed = MLP probe, error bars = 95% CI over seeds, dotted = majority class."""
    targets = list(dict.fromkeys(probes["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(3.3 * len(targets), 3.4), sharey=True, squeeze=False)
    views = list(dict.fromkeys(probes["view"]))
    colours = dict(zip(views, sns.color_palette("colorblind", len(views))))
    for ax, target in zip(axes[0], targets):
        mine = probes[probes.target == target]
        for (view, kind), line in mine.groupby(["view", "probe"], sort=False):
            err = [line["mean"] - line["ci95_low"], line["ci95_high"] - line["mean"]]
            ax.errorbar(line["layer"], line["mean"], yerr=err, color=colours[view], capsize=2, linewidth=1.3,
                        linestyle="-" if kind == "linear" else "--", marker="o", markersize=3)  # fmt: skip
        majority = mine.groupby("layer")["majority class"].mean()
        ax.plot(majority.index, majority.values, color="grey", linestyle=":", linewidth=1)
        ax.set_title(target if target == "relation" else f"patch token: {target}", fontsize=9)
        ax.set_xlabel("encoder layer (0 = embeddings)")
        ax.set_xticks(sorted(mine["layer"].unique()))
        ax.set_ylim(0, 1.02)
    axes[0, 0].set_ylabel("probe accuracy (held-out scenes)")
    handles = [plt.Line2D([], [], color=c, label=v) for v, c in colours.items()]
    kinds = (("linear", "-"), ("MLP", "--"))
    handles += [plt.Line2D([], [], color="k", linestyle=style, label=f"{k} probe") for k, style in kinds]
    handles.append(plt.Line2D([], [], color="grey", linestyle=":", label="majority class"))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


def share_bars(shares: pd.DataFrame, title: str) -> plt.Figure:
    """One panel per object count: attribution share per region and scoring (bars = seed mean with 95% CI
    across seeds, dots = seeds); ``shares`` has columns condition, objects, region, seed, value."""
    counts = sorted(shares["objects"].unique())
    fig, axes = plt.subplots(1, len(counts), figsize=(3.6 * len(counts), 3.6), sharey=True, squeeze=False)
    palette = model_palette(list(dict.fromkeys(shares["condition"])))
    for ax, count in zip(axes[0], counts):
        mine = shares[shares.objects == count]
        sns.barplot(data=mine, x="region", y="value", hue="condition", errorbar=("ci", 95), ax=ax, alpha=0.85,
                    capsize=0.1, legend=ax is axes[0, 0], palette=palette)  # fmt: skip
        sns.stripplot(data=mine, x="region", y="value", hue="condition", dodge=True, ax=ax, palette="dark:black",
                      size=3, legend=False)  # fmt: skip
        ax.set_title(f"{count}-object scenes", fontsize=9)
        ax.set_xlabel("")
        ax.set_ylim(0, 1.02)
    axes[0, 0].set_ylabel("share of |attribution|")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    axes[0, 0].get_legend().remove()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


VERDICT_COLOURS = {"reproduced": PALETTE[2], "partly": PALETTE[1], "not reproduced": PALETTE[3],
                   "confounded": PALETTE[4], "not testable here": PALETTE[7]}  # fmt: skip


def effect_forest(effects: pd.DataFrame, min_effect: float, title: str) -> plt.Figure:
    """One row per claim effect (``label``, ``effect``, ``ci95_low``, ``ci95_high``, ``verdict``): the mean
    difference in accuracy points with its percentile bootstrap 95% CI over seeds, coloured by verdict; the band
    marks ``min_effect`` either side of 0."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(effects) + 1.6))
    rows = effects.reset_index(drop=True)
    ax.axvspan(-100 * min_effect, 100 * min_effect, color="0.92", zorder=0)
    ax.axvline(0, color="grey", linewidth=0.8)
    for i, row in rows.iterrows():
        low, high = 100 * (row["effect"] - row["ci95_low"]), 100 * (row["ci95_high"] - row["effect"])
        ax.errorbar(100 * row["effect"], i, xerr=[[low], [high]], fmt="o", capsize=3,
                    color=VERDICT_COLOURS.get(row["verdict"], "k"))  # fmt: skip
    ax.set_yticks(range(len(rows)), [textwrap.fill(label, 60) for label in rows["label"]], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("A - B, accuracy points (mean over seeds, percentile bootstrap 95% CI over seeds)")
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=v) for v, c in VERDICT_COLOURS.items()]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="0.92", label=f"within ±{100 * min_effect:.0f} points"))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.7 / fig.get_figheight(), 1, 1))
    return fig
