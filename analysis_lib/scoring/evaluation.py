"""Score a model on a benchmark and turn the scores into tidy metric records (one code path for
toy exports and the real benchmarks).

Choices with a NaN or tied top score count as wrong (``metrics.unique_argmax``); each benchmark also gets a
``... no verdict`` row, the share of such choices, and a ``NoVerdictWarning`` names their number when there are any.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from analysis_lib.data.benchmarks import MMVPPair, WhatsUpItem, load_image
from analysis_lib.scoring.scorers import score_options
from analysis_lib.stats.metrics import (
    NO_CHOICE,
    RELATION_AXIS,
    bootstrap_ci,
    caption_relation,
    mmvp_image_choice,
    mmvp_pair_units,
    mmvp_statement_correct,
    opposite_option,
    pair_units,
    set_units,
    unique_argmax,
)

MMVP_TEXT_TEMPLATE = "a photo of {}"


class NoVerdictWarning(UserWarning):
    """Some choices had a NaN or tied top score and were counted wrong."""


def metric_record(benchmark: str, metric: str, units: np.ndarray, seed: int) -> dict:
    """One metric row: the mean of per-unit outcomes and its bootstrap CI."""
    low, high = bootstrap_ci(units, seed=seed)
    return {
        "benchmark": benchmark,
        "metric": metric,
        "value": float(np.mean(units)),
        "ci_low": low,
        "ci_high": high,
        "n_units": len(units),
    }


def no_verdict_record(benchmark: str, label: str, choices: np.ndarray, seed: int) -> dict:
    """The ``<label> no verdict`` row (share of ``NO_CHOICE`` choices); warns with their number when there are any."""
    undecided = (np.asarray(choices) == NO_CHOICE).ravel()
    if undecided.any():
        message = f"{benchmark} {label}: {undecided.sum()} of {undecided.size} choices had a NaN or tied top score"
        warnings.warn(f"{message}; counted wrong", NoVerdictWarning, stacklevel=3)
    return metric_record(benchmark, f"{label} no verdict", undecided.astype(float), seed)


def whatsup_option_scores(scorer, items: Sequence[WhatsUpItem]) -> np.ndarray:
    """``N x K`` scores of every image against all its caption options."""
    images = [load_image(item.image_path) for item in items]
    return score_options(scorer, images, [item.caption_options for item in items])


def _grouped_records(
    items: Sequence[WhatsUpItem], way: str, choices: np.ndarray, correct: np.ndarray, benchmark: str, seed: int
) -> list[dict]:
    """Controlled-A/B: pair and set accuracy over object pairs and (beyond 2-way) the axis of the chosen option
    (no choice: wrong axis)."""
    obj_pairs = [item.obj_pair for item in items]
    relations = [item.relation for item in items]
    records = [metric_record(benchmark, f"{way} pair", pair_units(obj_pairs, relations, correct), seed)]
    if way != "2-way":
        axis = [
            i != NO_CHOICE and RELATION_AXIS[caption_relation(item.caption_options[i])] == RELATION_AXIS[item.relation]
            for item, i in zip(items, choices)
        ]
        records.append(metric_record(benchmark, f"{way} axis", np.array(axis, dtype=float), seed))
    records.append(metric_record(benchmark, f"{way} set", set_units(obj_pairs, correct), seed))
    return records


def whatsup_records(
    items: Sequence[WhatsUpItem], scores: np.ndarray, benchmark: str, seed: int = 0, grouped: bool = True
) -> list[dict]:
    """Individual and per-relation accuracy over all K options; with ``grouped`` (Controlled-A/B) also 2-way (gold vs
    opposite relation) and pair, set and axis accuracy. COCO/GQA (K = 2, no object pairs): ``grouped=False``."""
    relations = np.array([item.relation for item in items])
    variants = {f"{scores.shape[1]}-way": scores}
    if grouped:
        opposite = [opposite_option(item.caption_options, item.relation) for item in items]
        variants["2-way"] = np.stack([scores[:, 0], scores[np.arange(len(items)), opposite]], axis=1)
    records = []
    for way, way_scores in variants.items():
        choices = unique_argmax(way_scores)
        correct = choices == 0
        records.append(metric_record(benchmark, f"{way} individual", correct.astype(float), seed))
        records.append(no_verdict_record(benchmark, way, choices, seed))
        if grouped:
            records += _grouped_records(items, way, choices, correct, benchmark, seed)
        for relation in dict.fromkeys(relations):
            records.append(
                metric_record(benchmark, f"{way} {relation}", correct[relations == relation].astype(float), seed)
            )
    return records


def mmvp_scores(scorer, pairs: Sequence[MMVPPair], template: str = MMVP_TEXT_TEMPLATE) -> np.ndarray:
    """``n_pairs x 2 images x 2 statements`` scores."""
    images = [load_image(path) for pair in pairs for path in pair.image_paths]
    scored = [
        (2 * p + image, template.format(statement))
        for p, pair in enumerate(pairs)
        for image in range(2)
        for statement in pair.statements
    ]
    return scorer.score_pairs(images, scored).reshape(len(pairs), 2, 2)


def mmvp_records(pairs: Sequence[MMVPPair], scores: np.ndarray, benchmark: str, seed: int = 0) -> list[dict]:
    """MMVP-VLM pair accuracy per pattern and over all pairs, statement accuracy (each statement picks its own image;
    the individual accuracy of the Figure-1 aggregate) and the share of statements with no verdict."""
    units = mmvp_pair_units(scores)
    patterns = np.array([pair.pattern for pair in pairs])
    records = [metric_record(benchmark, f"pair {p}", units[patterns == p], seed) for p in dict.fromkeys(patterns)]
    records.append(metric_record(benchmark, "pair all", units, seed))
    records.append(
        metric_record(benchmark, "statement all", mmvp_statement_correct(scores).astype(float).ravel(), seed)
    )
    records.append(no_verdict_record(benchmark, "statement", mmvp_image_choice(scores), seed))
    return records
