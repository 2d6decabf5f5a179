"""What'sUp and MMVP-VLM metrics exactly as the benchmarks define them, with bootstrap CIs.

Every metric is the mean of per-unit 0/1 outcomes (an image, an object pair's left/right images, an
object pair's four images, an MMVP pair), so confidence intervals resample those units.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy import stats

OPPOSITE_RELATION = {
    "left_of": "right_of",
    "right_of": "left_of",
    "on": "under",
    "under": "on",
    "above": "below",
    "below": "above",
    "in-front_of": "behind",
    "behind": "in-front_of",
    "left": "right",
    "right": "left",
    "top": "bottom",
    "bottom": "top",
}
RELATION_AXIS = {
    "left_of": "horizontal",
    "right_of": "horizontal",
    "on": "vertical",
    "under": "vertical",
    "above": "vertical",
    "below": "vertical",
    "in-front_of": "depth",
    "behind": "depth",
    "left": "horizontal",
    "right": "horizontal",
    "top": "vertical",
    "bottom": "vertical",
}
# Two-object relations ("a dog to the left of a table", "a cup to the behind of a box" in GQA-two) and the one-object
# positions of COCO/GQA-one ("a photo of a dog on the left"): "left"/"right"/"top"/"bottom" not followed by "of".
_RELATION_PHRASES = {
    "in-front_of": r"front of",
    "behind": r"behind",
    "left_of": r"left of",
    "right_of": r"right of",
    "under": r"under",
    "below": r"below",
    "above": r"above",
    "on": r"on(?! the (?:left|right|top|bottom)\b)",
    "left": r"left(?! of\b)",
    "right": r"right(?! of\b)",
    "top": r"top(?! of\b)",
    "bottom": r"bottom(?! of\b)",
}


def caption_relation(caption: str) -> str:
    """The one spatial relation a caption states (``left_of``, ``on``, ..., or a one-object position ``left``...)."""
    found = {rel for rel, phrase in _RELATION_PHRASES.items() if re.search(rf"\b{phrase}\b", caption.lower())}
    if len(found) != 1:
        raise ValueError(f"caption {caption!r} states {len(found)} known relations ({sorted(found)}); expected one")
    return found.pop()


def opposite_option(options: Sequence[str], relation: str) -> int:
    """Index of the caption option stating the opposite of ``relation`` (for What'sUp 2-way)."""
    target = OPPOSITE_RELATION[relation]
    matches = [i for i, text in enumerate(options) if caption_relation(text) == target]
    if len(matches) != 1:
        raise ValueError(f"options {list(options)} have {len(matches)} captions with relation {target!r}")
    return matches[0]


def option_correct(scores: np.ndarray) -> np.ndarray:
    """Per image: the gold option (column 0) wins. Two options: strictly higher (``s0 > s1``, the paper's
    2-way rule, so a tie is wrong); more: ``argmax == 0`` as What'sUp's 4-way (a tie goes to option 0)."""
    scores = np.asarray(scores)
    if scores.shape[1] == 2:
        return scores[:, 0] > scores[:, 1]
    return scores.argmax(axis=1) == 0


def _grouped_all(keys: Sequence[tuple], correct: np.ndarray, size: int, what: str) -> np.ndarray:
    """1 per group of ``size`` images whose images are all correct, else 0."""
    groups: dict[tuple, list[bool]] = defaultdict(list)
    for key, ok in zip(keys, correct):
        groups[key].append(bool(ok))
    incomplete = [k for k, v in groups.items() if len(v) != size]
    if incomplete:
        raise ValueError(f"{what}: {len(incomplete)} groups lack their {size} images, e.g. {incomplete[0]}")
    return np.array([all(v) for v in groups.values()], dtype=float)


def pair_units(obj_pairs: Sequence[tuple[str, str]], relations: Sequence[str], correct: np.ndarray) -> np.ndarray:
    """What'sUp pair outcomes: per object pair and axis, 1 if both opposite-relation images are correct."""
    keys = [(*pair, RELATION_AXIS[rel]) for pair, rel in zip(obj_pairs, relations)]
    return _grouped_all(keys, correct, 2, "pair accuracy")


def set_units(obj_pairs: Sequence[tuple[str, str]], correct: np.ndarray) -> np.ndarray:
    """What'sUp set outcomes: per object pair, 1 if all four of its images are correct."""
    return _grouped_all(list(obj_pairs), correct, 4, "set accuracy")


def mmvp_statement_correct(scores: np.ndarray) -> np.ndarray:
    """MMVP-VLM, per pair and statement: ``scores[p, image, statement]``, statement j's gold is image j.

    For each statement the first image is predicted when softmax over the two images gives it > 0.5,
    i.e. when it scores strictly higher; returns an ``n_pairs x 2`` boolean array.
    """
    scores = np.asarray(scores)
    first_predicted = scores[:, 0, :] > scores[:, 1, :]
    return np.stack([first_predicted[:, 0], ~first_predicted[:, 1]], axis=1)


def mmvp_pair_units(scores: np.ndarray) -> np.ndarray:
    """MMVP-VLM pair outcomes: 1 if both statements of a pair pick their own image."""
    return mmvp_statement_correct(scores).all(axis=1).astype(float)


def bootstrap_ci(units: np.ndarray, seed: int = 0, n_resamples: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the mean of per-unit outcomes."""
    units = np.asarray(units, dtype=float)
    if len(units) < 2 or np.ptp(units) == 0:
        return float(units.mean()), float(units.mean())
    res = stats.bootstrap(
        (units,), np.mean, n_resamples=n_resamples, confidence_level=0.95, method="percentile", rng=seed
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def seed_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean across seeds and its Student-t 95% interval."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2 or np.ptp(values) == 0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half
