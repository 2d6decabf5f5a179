"""Beyond spatial relations: the toy Winoground- and SugarCREPE-style sets
(``toy_benchmarks.export_compositional_sets``) loaded by the paper's benchmark loaders (``t2v_benchmarks``) and
scored with t2v_metrics' metrics (``t2v_evaluation``), per model and seed, and summarised over seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis_lib.score_cache import cached_scores
from analysis_lib.t2v_benchmarks import SUGARCREPE_SUBSETS, load_t2v_benchmarks
from analysis_lib.t2v_evaluation import t2v_records, t2v_scores
from analysis_lib.toy_benchmarks import WINOGROUND_KINDS, export_compositional_sets
from analysis_lib.toy_runs import seed_summary
from analysis_lib.toy_setup import EVAL_SEED, ToySetup

SETS = ("Winoground", "SugarCREPE")
ITEMS = 100  # per Winoground-style kind and per SugarCREPE-style subset
WINOGROUND_CHANCE = {"text": 0.25, "image": 0.25, "group": 1 / 6}
"""t2v_metrics' Winoground scores at random: text and image 1/4 (two comparisons), group 1/6."""
TESTS: dict[tuple[str, str], tuple[str, float]] = {
    **{("toy Winoground", f"{score} {kind}"): (f"Winoground-style {kind}: {score}", chance)
       for kind in WINOGROUND_KINDS for score, chance in WINOGROUND_CHANCE.items()},
    **{("toy SugarCREPE", f"text {subset}"): (f"SugarCREPE-style {subset}", 0.5) for subset in SUGARCREPE_SUBSETS},
}  # fmt: skip
"""Each (benchmark, metric) record that the chapter shows: its readable test name and chance level."""
CHANCE = dict(TESTS.values())


def compositional_sets(setup: ToySetup, smoke: bool) -> Path:
    """The sets' t2v_metrics root folder (exported once; 4 items per kind in a smoke run)."""
    return export_compositional_sets(setup.world, 4 if smoke else ITEMS, EVAL_SEED + 50)


def score_compositional(scorers: dict[str, object], root: Path, seed: int) -> list[dict]:
    """Metric records (``t2v_evaluation``'s, with ``model`` and ``seed``) of every scorer on both sets."""
    sets = load_t2v_benchmarks(root, names=SETS)
    records = []
    for model, scorer in scorers.items():
        scorer = cached_scores(scorer)
        for name, items in sets.items():
            rows = t2v_records(f"toy {name}", items, t2v_scores(scorer, items), seed)
            records += [{"model": model, "seed": seed, **row} for row in rows]
    return records


def compositional_table_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The records of ``TESTS``, one per model and seed, with their readable ``test`` name, in ``TESTS`` order."""
    keys = list(zip(metrics["benchmark"], metrics["metric"]))
    rows = metrics[[key in TESTS for key in keys]].copy()
    rows["test"] = [TESTS[key][0] for key in zip(rows["benchmark"], rows["metric"])]
    order = {name: i for i, (name, _) in enumerate(TESTS.values())}
    return rows.sort_values(by="test", key=lambda s: s.map(order), kind="stable")


def compositional_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per test and model: the mean over seeds with its bootstrap 95% CI, per-seed values, seeds above chance."""
    return seed_summary(compositional_table_rows(metrics), "model", CHANCE)
