"""Beyond spatial relations: the toy Winoground- and SugarCREPE-style sets
(``toy_benchmarks.export_compositional_sets``) loaded by the paper's benchmark loaders (``t2v_benchmarks``) and
scored with t2v_metrics' metrics (``t2v_evaluation``), per model and seed, and summarised over seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis_lib.data.t2v_benchmarks import load_t2v_benchmarks
from analysis_lib.data.toy_benchmarks import export_compositional_sets
from analysis_lib.full.t2v_evaluation import t2v_records, t2v_scores
from analysis_lib.scoring.score_cache import cached_scores
from analysis_lib.toy.toy_runs import COMPOSITIONAL_TESTS, headline, seed_summary
from analysis_lib.toy.toy_setup import EVAL_SEED, ToySetup

SETS = ("Winoground", "SugarCREPE")
ITEMS = 100  # per Winoground-style kind and per SugarCREPE-style subset


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
    """The records of ``toy_runs.COMPOSITIONAL_TESTS``, one per model and seed, with their readable ``test`` name."""
    rows = headline(metrics)
    return rows[rows.test.isin(COMPOSITIONAL_TESTS.values())]


def compositional_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per test and model: the mean over seeds with its bootstrap 95% CI, per-seed values, seeds above chance."""
    return seed_summary(compositional_table_rows(metrics), "model")
