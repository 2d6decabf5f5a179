"""Score models on the paper's other benchmarks (``analysis_lib.data.t2v_benchmarks``) through resumable score logs and
turn the scores into metric records as t2v_metrics' ``evaluate_scores`` defines them; ``score_t2v_benchmarks`` is
the one call a chapter makes::

    scorers = {"CLIP (cosine)": ("open_clip:ViT-L-14-336/openai", clip), "LLaVA (VQAScore)": (llava_spec, llava)}
    metrics = score_t2v_benchmarks(scorers, Path("datasets"), results_folder, only_present=True)
    figure1_aggregate(figure1_inputs(pd.concat([metrics, whatsup_and_mmvp_metrics])))

Records have the columns of ``evaluation``'s (``benchmark, metric, value, ci_low, ci_high, n_units``) plus
``model``. Accuracies are means of per-unit 0/1 outcomes with bootstrap CIs; SeeTRUE's AUCs have bootstrap CIs
(positives and negatives resampled apart), their mean none (NaN).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis_lib.data.benchmarks import load_image
from analysis_lib.data.t2v_benchmarks import T2VItem, load_t2v_benchmarks
from analysis_lib.full.score_log import file_digest, keyed_log, score_log_spec, slug
from analysis_lib.full.sharding import sharded_scores
from analysis_lib.scoring.evaluation import metric_record, no_verdict_record
from analysis_lib.stats.retrieval_metrics import (
    IMAGE_COMPARISONS,
    TEXT_COMPARISONS,
    auc_by_source,
    pairwise_choices,
    winoground_outcomes,
)


def item_shape(items: Sequence[T2VItem]) -> tuple[int, int]:
    """``(images, texts)`` per item, the same for every item of a benchmark (``ValueError`` otherwise)."""
    shapes = {(len(item.image_paths), len(item.texts)) for item in items}
    if len(shapes) != 1:
        raise ValueError(f"a benchmark's items must all have the same numbers of images and texts; found {shapes}")
    return shapes.pop()


def t2v_scores(scorer, items: Sequence[T2VItem]) -> np.ndarray:
    """``N x images x texts`` scores: every image of an item against every text of it (t2v_metrics' layout)."""
    n_images, n_texts = item_shape(items)
    images = [load_image(path) for item in items for path in item.image_paths]
    pairs = [(n * n_images + i, text) for n, item in enumerate(items) for i in range(n_images) for text in item.texts]
    return scorer.score_pairs(images, pairs).reshape(len(items), n_images, n_texts)


def t2v_keys(items: Sequence[T2VItem]) -> list[str]:
    """A stable key per item: its position and image file names."""
    return [f"{i}:{'+'.join(path.name for path in item.image_paths)}" for i, item in enumerate(items)]


def t2v_fingerprint(items: Sequence[T2VItem]) -> str:
    """SHA-256 of the items' image names and contents, texts and labels (part of the score log's spec)."""
    parts = [
        ([p.name for p in i.image_paths], [file_digest(p) for p in i.image_paths], i.texts, i.label) for i in items
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def score_t2v_benchmark(
    scorer, model_spec: str, benchmark: str, items: Sequence[T2VItem], folder: Path, batch_size: int = 32
) -> np.ndarray:
    """One model's ``N x images x texts`` scores on one benchmark, resumed from and appended to its score log
    (``<folder>/scores/<model>/<benchmark>.<spec hash>.part<rank>.jsonl``, as chapter 1's full-scale logs)."""
    spec = score_log_spec(scorer, model_spec, benchmark, t2v_fingerprint(items))
    shape = item_shape(items)
    log = keyed_log(Path(folder) / "scores" / slug(model_spec) / f"{slug(benchmark)}.jsonl", spec)

    def flat_scores(chunk: list[T2VItem]) -> np.ndarray:
        """One row of ``images x texts`` scores per item (the log's rows)."""
        return t2v_scores(scorer, chunk).reshape(len(chunk), -1)

    flat = sharded_scores(flat_scores, list(items), t2v_keys(items), log, spec, batch_size, benchmark)
    return flat.reshape(len(items), *shape)


def _tags(items: Sequence[T2VItem]) -> dict[str, np.ndarray]:
    """Each tag (subset) in first-seen order and the mask of its items."""
    names = dict.fromkeys(tag for item in items for tag in item.tags)
    return {name: np.array([name in item.tags for item in items]) for name in names}


def pair_records(benchmark: str, items: Sequence[T2VItem], scores: np.ndarray, seed: int = 0) -> list[dict]:
    """Two-image, two-caption benchmarks: text, image, group and individual accuracy over all items and text, image
    and group per tag (Winoground's and EqBen's subsets), and the share of comparisons with no verdict."""
    outcomes = winoground_outcomes(scores)
    records = [metric_record(benchmark, f"{name} all", outcomes[name].astype(float).ravel(), seed) for name in outcomes]
    for tag, mask in _tags(items).items():
        records += [metric_record(benchmark, f"{name} {tag}", outcomes[name][mask].astype(float), seed)
                    for name in ("text", "image", "group")]  # fmt: skip
    choices = pairwise_choices(scores, TEXT_COMPARISONS + IMAGE_COMPARISONS)
    return [*records, no_verdict_record(benchmark, "comparison", choices, seed)]


def sugarcrepe_records(benchmark: str, items: Sequence[T2VItem], scores: np.ndarray, seed: int = 0) -> list[dict]:
    """SugarCREPE: accuracy over all items (``text all``, t2v_metrics' overall) and per subset, and no-verdict share."""
    choices = pairwise_choices(scores, [((0, 0), (0, 1))])
    correct = (choices[:, 0] == 0).astype(float)
    records = [metric_record(benchmark, "text all", correct, seed)]
    records += [metric_record(benchmark, f"text {tag}", correct[mask], seed) for tag, mask in _tags(items).items()]
    return [*records, no_verdict_record(benchmark, "comparison", choices, seed)]


def seetrue_records(benchmark: str, items: Sequence[T2VItem], scores: np.ndarray) -> list[dict]:
    """SeeTRUE: ROC AUC per ``dataset_source`` (t2v_metrics' table) with bootstrap CIs, and their unweighted mean
    (``AUC mean``, no CI)."""
    table = auc_by_source([i.label for i in items], scores[:, 0, 0], [i.tags[0] for i in items])
    rows = [(f"AUC {r.dataset_source}", r.roc_auc, r.auc_low, r.auc_high, r.num_samples) for r in table.itertuples()]
    rows.append(("AUC mean", float(table.roc_auc.mean()), np.nan, np.nan, len(items)))
    return [{"benchmark": benchmark, "metric": metric, "value": value, "ci_low": low, "ci_high": high, "n_units": n}
            for metric, value, low, high, n in rows]  # fmt: skip


def t2v_records(benchmark: str, items: Sequence[T2VItem], scores: np.ndarray, seed: int = 0) -> list[dict]:
    """The metric records of one benchmark's scores, by its items' shape (SeeTRUE: labelled single texts)."""
    shape = item_shape(items)
    if items[0].label is not None:
        return seetrue_records(benchmark, items, scores)
    if shape == (1, 2):
        return sugarcrepe_records(benchmark, items, scores, seed)
    if shape == (2, 2):
        return pair_records(benchmark, items, scores, seed)
    raise ValueError(f"{benchmark}: no metric is defined for items of {shape[0]} images and {shape[1]} texts")


def score_t2v_benchmarks(
    scorers: Mapping[str, tuple[str, object]],
    root: Path,
    folder: Path,
    only_present: bool = False,
    strict: bool = False,
    batch_size: int = 32,
    coco_images: Path | None = None,
) -> pd.DataFrame:
    """Every scorer (``{model label: (model spec, scorer)}``, e.g. CLIP cosine and LLaVA VQAScore) on every
    benchmark under the t2v_metrics root ``root`` (see ``load_t2v_benchmarks``), scores logged under ``folder``;
    one metric row per model, benchmark and metric."""
    benchmarks = load_t2v_benchmarks(Path(root), only_present=only_present, strict=strict, coco_images=coco_images)
    records = []
    for model, (spec, scorer) in scorers.items():
        for benchmark, items in benchmarks.items():
            scores = score_t2v_benchmark(scorer, spec, benchmark, items, Path(folder), batch_size)
            records += [{"model": model, **row} for row in t2v_records(benchmark, items, scores)]
    return pd.DataFrame(records)
