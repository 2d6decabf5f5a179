"""Published numbers (REFERENCE.md §4) to put beside the book's own full-scale results.

Each anchor says which model and which protocol produced it, because several are not the exact
model or protocol the chapter runs (the table says so rather than hiding it).
"""

from __future__ import annotations

import pandas as pd

from analysis_lib.data.benchmarks import MMVP_PATTERNS

MMVP_PAPER = "MMVP paper (Tong et al., 2024), MMVP-VLM table"
LLM2CLIP = "CLIP-Embeds repo results file (LLM2CLIP-OpenAI-L-14-336, not OpenAI CLIP)"
FIGURE_1 = "paper Figure 1: average over What'sUp, SugarCREPE, Winoground, NaturalBench, SeeTRUE, MMVP"
CLIP, LLAVA = "CLIP (cosine)", "LLaVA (VQAScore)"
_MMVP_CLIP_L336 = (0.0, 20.0, 40.0, 20.0, 6.7, 20.0, 33.3, 6.7, 33.3)
_LLM2CLIP_WHATSUP = {
    ("Controlled-A", "2-way"): (54.13, 9.22, 0.97),
    ("Controlled-B", "2-way"): (52.21, 7.84, 0.0),
    ("Controlled-A", "4-way"): (30.58, 0.49, 0.0),
    ("Controlled-B", "4-way"): (32.11, 2.94, 0.0),
}
_LLM2CLIP_SPATIAL = {"COCO-one": 50.02, "COCO-two": 52.95, "GQA-one": 46.29, "GQA-two": 56.01}


def _row(benchmark: str, metric: str, model: str, value: float, source: str, comparable: bool) -> dict:
    """One anchor; ``value`` in percent as published, stored as a fraction like the book's metrics."""
    return {
        "benchmark": benchmark,
        "metric": metric,
        "model": model,
        "published": value / 100,
        "source": source,
        "same model and protocol": comparable,
    }


def published_anchors() -> pd.DataFrame:
    """Every anchor of REFERENCE.md §4 keyed by the book's (benchmark, metric, model) names."""
    rows = [
        _row("MMVP-VLM", f"pair {pattern}", CLIP, value, MMVP_PAPER, True)
        for pattern, value in zip(MMVP_PATTERNS, _MMVP_CLIP_L336)
    ]
    rows.append(_row("MMVP-VLM", "pair all", CLIP, 20.0, MMVP_PAPER, True))
    for (subset, way), values in _LLM2CLIP_WHATSUP.items():
        for kind, value in zip(("individual", "pair", "set"), values):
            rows.append(_row(subset, f"{way} {kind}", CLIP, value, LLM2CLIP, False))
    rows += [_row(s, "2-way individual", CLIP, v, LLM2CLIP, False) for s, v in _LLM2CLIP_SPATIAL.items()]
    for model, individual, pair in ((CLIP, 55.6, 19.3), (LLAVA, 88.0, 59.2)):
        rows.append(_row("six-benchmark average", "individual", model, individual, FIGURE_1, False))
        rows.append(_row("six-benchmark average", "pair", model, pair, FIGURE_1, False))
    return pd.DataFrame(rows)


def beside_anchors(metrics: pd.DataFrame) -> pd.DataFrame:
    """The book's metrics (mean over seeds) next to every published anchor; ``ours`` is NaN where the
    run did not produce that metric (e.g. the six-benchmark average needs benchmarks not run here)."""
    ours = metrics.groupby(["benchmark", "metric", "model"], as_index=False)["value"].mean()
    table = published_anchors().merge(ours, on=["benchmark", "metric", "model"], how="left")
    return table.rename(columns={"value": "ours"})[
        ["benchmark", "metric", "model", "ours", "published", "same model and protocol", "source"]
    ]
