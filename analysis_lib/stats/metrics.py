"""What'sUp and MMVP-VLM metrics exactly as the benchmarks define them, with bootstrap CIs.

Every metric is the mean of per-unit 0/1 outcomes (an image, an object pair's left/right images, an
object pair's four images, an MMVP pair), so confidence intervals resample those units.

A choice among scores is made only when its highest score is finite and unique (``unique_argmax``): a row with
a NaN or infinite score, or with its highest score tied, gives no verdict and is counted wrong. Upstream, What'sUp's
4-way argmax gives a tie (and an all-NaN row) to option 0, the gold caption, and MMVP-VLM's ``p > 0.5`` rule gives
a tie to the second image; here neither can make a wrong score count as right.
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


NO_CHOICE = -1  # what ``unique_argmax`` gives where no option can be chosen


def unique_argmax(scores: np.ndarray) -> np.ndarray:
    """Per row (last axis), the index of its one highest score; ``NO_CHOICE`` if a score is NaN/inf or the top ties."""
    scores = np.asarray(scores, dtype=float)
    with np.errstate(invalid="ignore"):
        top_count = (scores == scores.max(axis=-1, keepdims=True)).sum(axis=-1)
    decided = np.isfinite(scores).all(axis=-1) & (top_count == 1)
    return np.where(decided, scores.argmax(axis=-1), NO_CHOICE)


def option_correct(scores: np.ndarray) -> np.ndarray:
    """Per image: the gold option (column 0) is the unique highest score (2-way: ``s0 > s1``; a tie or NaN is wrong)."""
    return unique_argmax(scores) == 0


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


def mmvp_image_choice(scores: np.ndarray) -> np.ndarray:
    """MMVP-VLM: ``scores[p, image, statement]`` -> ``n_pairs x 2``, the image each statement picks (or ``NO_CHOICE``).

    A statement picks the first image when softmax over the two images gives it > 0.5, i.e. when it scores
    strictly higher, and the second when that scores strictly higher; a tie or a NaN picks neither.
    """
    return unique_argmax(np.swapaxes(np.asarray(scores), 1, 2))


def mmvp_statement_correct(scores: np.ndarray) -> np.ndarray:
    """MMVP-VLM, per pair and statement: statement j picks its own image j (``n_pairs x 2`` booleans)."""
    return mmvp_image_choice(scores) == np.arange(2)


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
