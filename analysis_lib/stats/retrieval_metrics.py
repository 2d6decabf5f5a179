"""Metrics of the paper's other benchmarks, as t2v_metrics' dataset classes define them (``evaluate_scores`` in
``lst627/CLIP-Embeds``' ``t2v_metrics/dataset.py``), and the Figure-1 aggregate.

Scores are ``scores[item, image, text]``, the array t2v_metrics' ``batch_forward`` returns. Every comparison is
strict, as upstream's ``>``: a tie is wrong, and so is a NaN (NaN compares false upstream too); here each
comparison is a ``metrics.unique_argmax`` choice between two scores, so the share of undecided comparisons is
counted as well.

- Winoground, NaturalBench, EqBen-mini, COCO-Counterfactuals (two images, two captions; ``get_winoground_acc``):
  text score = each image prefers its own caption; image score = each caption prefers its own image; group = both.
- SugarCREPE (``get_sugarcrepe_acc``): the positive caption scores above the negative one.
- SeeTRUE: ROC AUC of the scores against the 0/1 labels, per ``dataset_source`` (upstream: sklearn's
  ``roc_auc_score``; it stops at a NaN score, here a NaN ranks as the worst score for its label).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis_lib.stats.metrics import unique_argmax

# (preferred, other) score positions [image, text] of each comparison of a two-image, two-caption item.
TEXT_COMPARISONS = (((0, 0), (0, 1)), ((1, 1), (1, 0)))  # image 0: caption 0 > caption 1; image 1: 1 > 0
IMAGE_COMPARISONS = (((0, 0), (1, 0)), ((1, 1), (0, 1)))  # caption 0: image 0 > image 1; caption 1: 1 > 0


def pairwise_choices(scores: np.ndarray, comparisons: Sequence[tuple[tuple[int, int], tuple[int, int]]]) -> np.ndarray:
    """``N x len(comparisons)`` choices (``unique_argmax``: 0 = the preferred score is strictly higher)."""
    scores = np.asarray(scores, dtype=float)
    return np.stack([unique_argmax(np.stack([scores[:, *a], scores[:, *b]], axis=-1)) for a, b in comparisons], 1)


def winoground_outcomes(scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per item of ``N x 2 images x 2 captions`` scores: ``text``, ``image`` and ``group`` (both) 0/1 outcomes, as
    t2v_metrics' ``get_winoground_acc``, and ``individual``: ``N x 2``, image j prefers caption j (the fork's
    Flickr30K-P "individual", one unit per image)."""
    text = pairwise_choices(scores, TEXT_COMPARISONS) == 0
    image = pairwise_choices(scores, IMAGE_COMPARISONS) == 0
    return {"text": text.all(1), "image": image.all(1), "group": text.all(1) & image.all(1), "individual": text}


def sugarcrepe_correct(scores: np.ndarray) -> np.ndarray:
    """Per item of ``N x 1 image x 2 captions`` scores: the positive caption strictly above the negative."""
    return pairwise_choices(scores, [((0, 0), (0, 1))])[:, 0] == 0


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve: P(positive scores above negative), ties half (sklearn's ``roc_auc_score``);
    a NaN score ranks lowest for a positive and highest for a negative."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC AUC needs positive and negative items; got {n_pos} positive, {n_neg} negative")
    ranks = stats.rankdata(np.where(np.isnan(scores), np.where(labels, -np.inf, np.inf), scores))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_bootstrap_ci(
    labels: Sequence[int], scores: Sequence[float], seed: int = 0, n_resamples: int = 2000
) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of ``roc_auc``; positives and negatives are resampled apart (both in each)."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    positives, negatives = scores[labels], scores[~labels]
    both = np.r_[np.ones(len(positives), bool), np.zeros(len(negatives), bool)]
    aucs = [
        roc_auc(both, np.r_[rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))])
        for _ in range(n_resamples)
    ]
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(low), float(high)


def auc_by_source(labels: Sequence[int], scores: Sequence[float], sources: Sequence[str]) -> pd.DataFrame:
    """SeeTRUE's table: per ``dataset_source`` (sorted, as pandas' groupby): samples, positives, negatives, ROC AUC
    and its bootstrap 95% CI (``auc_low``, ``auc_high``)."""
    frame = pd.DataFrame({"label": np.asarray(labels, dtype=int), "score": scores, "source": sources})
    rows = [
        {
            "dataset_source": source,
            "num_samples": len(group),
            "num_pos": int(group.label.sum()),
            "num_neg": int(len(group) - group.label.sum()),
            "roc_auc": roc_auc(group.label, group.score),
            **dict(zip(("auc_low", "auc_high"), auc_bootstrap_ci(group.label, group.score))),
        }
        for source, group in frame.groupby("source", sort=True)
    ]
    return pd.DataFrame(rows)


FIGURE1_METRICS: dict[str, tuple[str, str, str | None]] = {
    "Controlled-A": ("What'sUp", "2-way individual", "2-way pair"),
    "Controlled-B": ("What'sUp", "2-way individual", "2-way pair"),
    "SugarCREPE": ("SugarCREPE", "text all", None),
    "Winoground": ("Winoground", "individual all", "text all"),
    "NaturalBench": ("NaturalBench", "individual all", "text all"),
    "SeeTRUE": ("SeeTRUE", "AUC mean", None),
    "MMVP-VLM": ("MMVP", "statement all", "pair all"),
}
"""benchmark -> (Figure-1 group, individual metric, pair metric or None). This library's reading: REFERENCE.md says
only that Figure 1 averages individual and pair accuracy over What'sUp, SugarCREPE, Winoground, NaturalBench,
SeeTRUE and MMVP. Individual = one unit per image (per statement for MMVP); pair = both images of a pair right (the
text score for two-image items, as the fork's Flickr30K-P "text" next to its "individual"); SugarCREPE and SeeTRUE
have no pairs, and SeeTRUE's "individual" is its mean AUC over sources, the only score its class reports."""


def figure1_inputs(metrics: pd.DataFrame, mapping: Mapping[str, tuple[str, str, str | None]] = FIGURE1_METRICS):
    """Per model and Figure-1 group: ``individual`` and ``pair`` (NaN if none), each the mean over the group's
    benchmarks found in ``metrics`` (rows ``model, benchmark, metric, value``; a benchmark without rows for a model
    is left out, one with rows but without its metrics raises ``ValueError``)."""
    rows = []
    for benchmark, (group, individual, pair) in mapping.items():
        for model, found in metrics[metrics.benchmark == benchmark].groupby("model", sort=False):
            values = dict(zip(found.metric, found.value))
            lacking = [metric for metric in (individual, pair) if metric is not None and metric not in values]
            if lacking:
                raise ValueError(f"{benchmark} ({model}) lacks the metric(s) {lacking} that Figure 1 averages")
            rows.append({"model": model, "group": group, "individual": values[individual],
                         "pair": values[pair] if pair else np.nan})  # fmt: skip
    frame = pd.DataFrame(rows, columns=["model", "group", "individual", "pair"])
    return frame.groupby(["model", "group"], sort=False, as_index=False)[["individual", "pair"]].mean()


def figure1_aggregate(inputs: pd.DataFrame) -> pd.DataFrame:
    """Per model: individual accuracy averaged over its groups and pair accuracy over the groups that have pairs
    (each group weighs the same), with the number of groups in each mean."""
    grouped = inputs.groupby("model", sort=False)
    return pd.DataFrame(
        {
            "individual": grouped.individual.mean(),
            "pair": grouped.pair.mean(),
            "n_individual": grouped.individual.count(),
            "n_pair": grouped.pair.count(),
        }
    ).reset_index()
