"""What every toy chapter does with its models: score them on chapter 1's sets, train or load LLaVA
variants per seed, and read the scores and training logs as tables with intervals over seeds and the count of
seeds above chance."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from analysis_lib.core.results import results_dir, write_results
from analysis_lib.data.benchmarks import load_mmvp_vlm, load_whatsup_controlled
from analysis_lib.data.t2v_benchmarks import SUGARCREPE_SUBSETS
from analysis_lib.data.toy_benchmarks import (
    ATTRIBUTE_FILE,
    MMVP_FOLDER,
    RELATION_FILE,
    WINOGROUND_KINDS,
    export_toy_benchmarks,
)
from analysis_lib.scoring.evaluation import mmvp_records, mmvp_scores, whatsup_option_scores, whatsup_records
from analysis_lib.scoring.probing import FINE_TARGET
from analysis_lib.scoring.score_cache import cached_scores
from analysis_lib.scoring.scorers import ClipScorer, VQAScorer
from analysis_lib.stats.seed_stats import MARGIN, k_of_n, seed_interval, seeds_above
from analysis_lib.toy.pipeline import ToyModels, seed_jobs, toy_llava_folder, toy_models, train_toy_models, training_log
from analysis_lib.toy.toy_setup import EVAL_SEED, ToySetup
from analysis_lib.training.clip_llava import Stage, total_steps

EVAL_PAIRS = 100
CLIP_NAME, LLAVA_NAME = "CLIP (cosine)", "LLaVA (VQAScore)"
HEADLINE = {
    ("relations", "4-way individual"): "relation 4-way",
    ("relations", "4-way axis"): "relation axis (4-way choice on the right axis)",
    ("relations", "2-way individual"): "relation 2-way",
    ("relations", "2-way pair"): "relation 2-way pair",
    ("attributes", "4-way individual"): "attribute 4-way",
    ("pairs", "pair Spatial"): "MMVP-style spatial pairs",
    ("pairs", "pair Color"): "MMVP-style colour pairs",
}
WINOGROUND_CHANCE = {"text": 0.25, "image": 0.25, "group": 1 / 6}
"""t2v_metrics' Winoground scores at random: text and image 1/4 (two comparisons each), group 1/6."""
COMPOSITIONAL_TESTS = {
    **{("toy Winoground", f"{score} {kind}"): f"Winoground-style {kind}: {score}"
       for kind in WINOGROUND_KINDS for score in WINOGROUND_CHANCE},
    **{("toy SugarCREPE", f"text {subset}"): f"SugarCREPE-style {subset}" for subset in SUGARCREPE_SUBSETS},
}  # fmt: skip
"""Chapter 1's compositional tests (``analysis_lib.toy.compositional``), part of the headline tests."""
HEADLINE |= COMPOSITIONAL_TESTS
LM_TOKENS = "image tokens the LM receives"  # chapter 7's per-token probes of each LLaVA's projected image tokens
LM_TOKENS_TEST = "sub-patch offset in the LM's image tokens (linear probe)"
HEADLINE[(LM_TOKENS, f"{FINE_TARGET}, linear probe")] = LM_TOKENS_TEST
VARIANT_TESTS = ("relation 4-way", "attribute 4-way", "MMVP-style spatial pairs", "MMVP-style colour pairs")
CHANCE = {
    "relation 4-way": 0.25,
    "relation axis (4-way choice on the right axis)": 0.5,
    "relation 2-way": 0.5,
    "relation 2-way pair": 0.25,
    "attribute 4-way": 0.25,
    "MMVP-style spatial pairs": 0.25,
    "MMVP-style colour pairs": 0.25,
    **{f"Winoground-style {kind}: {score}": chance for kind in WINOGROUND_KINDS
       for score, chance in WINOGROUND_CHANCE.items()},
    **{f"SugarCREPE-style {subset}": 0.5 for subset in SUGARCREPE_SUBSETS},
    LM_TOKENS_TEST: 1 / 3,  # three offsets, drawn uniformly
}  # fmt: skip


BUDGET_FACTOR = 2
BUDGET_RULE = (
    f"every LLaVA variant has the chapter LLaVA's curriculum, stage caps and restarts, and stops, stalled, once it has "
    f"trained {BUDGET_FACTOR}x the steps the same seed's chapter LLaVA needed (its abandoned attempts counted)"
)
"""The equal-budget rule for the chapters' LLaVA variants, as the chapters state it."""


def smoke_curriculum(curriculum: tuple[Stage, ...]) -> tuple[Stage, ...]:
    """The same stages, two steps each, checked every step (numbers meaningless)."""
    return tuple(dataclasses.replace(stage, max_steps=2) for stage in curriculum)


def smoke_config(cfg, smoke: bool):
    """A training config (``steps``, ``batch_size``, ``warmup``), or two small steps of it in a smoke run."""
    return dataclasses.replace(cfg, steps=2, batch_size=16, warmup=1) if smoke else cfg


def evaluation_sets(setup: ToySetup, smoke: bool) -> Path:
    """Chapter 1's relation, attribute and pair sets (exported once in the upstream formats)."""
    return export_toy_benchmarks(setup.world, 4 if smoke else EVAL_PAIRS, EVAL_SEED)


def model_scorers(models: ToyModels) -> dict[str, ClipScorer | VQAScorer]:
    """The two scorers on one seed's toy models."""
    return {
        CLIP_NAME: ClipScorer(models.clip, models.clip_processor),
        LLAVA_NAME: VQAScorer(models.llava, models.llava_processor, models.prompt_format),
    }


def score_all(scorers: dict[str, object], bench_dir: Path, seed: int) -> list[dict]:
    """Metric records of every scorer on the relation, attribute and pair sets."""
    relations = load_whatsup_controlled(bench_dir / RELATION_FILE)
    attributes = load_whatsup_controlled(bench_dir / ATTRIBUTE_FILE)
    pairs = load_mmvp_vlm(bench_dir / MMVP_FOLDER)
    records = []
    for model, scorer in scorers.items():
        scorer = cached_scores(scorer)
        rows = whatsup_records(relations, whatsup_option_scores(scorer, relations), "relations", seed)
        rows += whatsup_records(attributes, whatsup_option_scores(scorer, attributes), "attributes", seed, False)
        rows += mmvp_records(pairs, mmvp_scores(scorer, pairs), "pairs", seed)
        records += [{"model": model, "seed": seed, **row} for row in rows]
    return records


@dataclass
class VariantRun:
    """LLaVA variants scored on chapter 1's sets: metrics (variant in ``condition``), model folders and
    wall seconds per variant and seed."""

    metrics: pd.DataFrame
    folders: dict[str, dict[int, Path]]
    seconds: dict[str, dict[int, float]]


def budgeted(setup: ToySetup, seed: int, baseline: ToySetup, device: str = "cpu", progress: bool = True) -> ToySetup:
    """``setup`` with the step budget of ``BUDGET_RULE``: ``BUDGET_FACTOR`` times the steps ``baseline``'s LLaVA
    of the same seed trained (that LLaVA trained first if the cache lacks it)."""
    folder, _ = toy_llava_folder(baseline, seed, device, progress)
    budget = BUDGET_FACTOR * total_steps(training_log(folder))
    return dataclasses.replace(setup, llava_train=dataclasses.replace(setup.llava_train, step_budget=budget))


def train_variants(
    setups: dict[str, ToySetup], seeds: list[int], baseline: ToySetup, device: str, progress: bool = True,
    workers: int = 0,
) -> None:  # fmt: skip
    """Train what the cache lacks, in ``workers`` processes (``pipeline.train_toy_models``): ``baseline``'s LLaVA on
    every seed, then every variant's under ``BUDGET_RULE`` (with what each needs: features, SSL encoders)."""
    train_toy_models(seed_jobs([baseline], seeds), workers, device, progress)
    jobs = [(budgeted(setup, seed, baseline, device, progress), seed) for seed in seeds for setup in setups.values()]
    train_toy_models(jobs, workers, device, progress)


def run_variants(
    setups: dict[str, ToySetup], seeds: list[int], bench_dir: Path, baseline: ToySetup, device: str,
    progress: bool = True, workers: int = 0,
) -> VariantRun:  # fmt: skip
    """Train or load each variant's LLaVA on every seed under ``BUDGET_RULE`` against ``baseline`` (the chapter
    LLaVA's setup; variants not cached train in ``workers`` processes first: see ``pipeline.train_toy_models``)
    and score it with VQAScore."""
    train_variants(setups, seeds, baseline, device, progress, workers)
    records, folders, seconds = [], {}, {}
    for variant, setup in setups.items():
        folders[variant], seconds[variant] = {}, {}
        for seed in seeds:
            start = time.perf_counter()
            models = toy_models(budgeted(setup, seed, baseline, device, progress), seed, device, progress)
            scorer = {LLAVA_NAME: model_scorers(models)[LLAVA_NAME]}
            records += [{"condition": variant, **r} for r in score_all(scorer, bench_dir, seed)]
            folders[variant][seed], seconds[variant][seed] = models.folders["llava"], time.perf_counter() - start
    return VariantRun(pd.DataFrame(records), folders, seconds)


def transitions(run: VariantRun) -> pd.DataFrame:
    """Per variant, seed and curriculum stage: where the stage started (in stage-2 steps), how many
    steps it ran, and the step at which its held-out check first passed (None: it ran to its cap)."""
    rows = []
    for variant, by_seed in run.folders.items():
        for seed, folder in by_seed.items():
            start = 0
            for stage in training_log(folder)["stages"]:
                passed = stage["passed_at"]
                last = stage["checks"][-1] if stage["checks"] else {}
                rows.append({"variant": variant, "seed": seed, "stage": stage["stage"], "starts at": start,
                             "steps": stage["steps"], "passed at": None if passed is None else start + passed,
                             "final check": last.get("value"), "target": stage["target"] if stage["checks"] else None,
                             "cap": stage["max_steps"], "budget spent": bool(stage.get("budget_spent"))})  # fmt: skip
                start += stage["steps"]
    return pd.DataFrame(rows)


def check_curves(run: VariantRun) -> pd.DataFrame:
    """Every held-out check of every variant and seed, at its cumulative training step."""
    rows = []
    for variant, by_seed in run.folders.items():
        for seed, folder in by_seed.items():
            start = 0
            for stage in training_log(folder)["stages"]:
                rows += [{"variant": variant, "seed": seed, "stage": stage["stage"], "step": start + c["step"],
                          "value": c["value"]} for c in stage["checks"]]  # fmt: skip
                start += stage["steps"]
    return pd.DataFrame(rows)


def headline(metrics: pd.DataFrame) -> pd.DataFrame:
    """The headline metrics, one row per seed, with readable test names."""
    keys = list(zip(metrics["benchmark"], metrics["metric"]))
    rows = metrics[[k in HEADLINE for k in keys]].copy()
    rows["test"] = [HEADLINE[k] for k in zip(rows["benchmark"], rows["metric"])]
    order = {name: i for i, name in enumerate(HEADLINE.values())}
    return rows.sort_values(by="test", key=lambda s: s.map(order), kind="stable")


ABOVE_CHANCE = f"seeds >= chance + {100 * MARGIN:.0f} points"
"""The summary column counting the seeds whose accuracy clears chance by ``MARGIN`` (a seed that crossed)."""


def seed_row(group: pd.DataFrame, chance: float | None) -> dict:
    """Summary of one group's per-seed ``value``s: the mean with its percentile bootstrap 95% interval over seeds, the
    per-seed values and, where ``chance`` is given, how many seeds clear it by ``MARGIN`` (k of n)."""
    mean, low, high = seed_interval(group["value"])
    row = {"mean": mean, "ci95_low": low, "ci95_high": high,
           "per seed": ", ".join(f"{v:.1%}" for v in group.sort_values("seed")["value"])}  # fmt: skip
    if chance is not None:
        row[ABOVE_CHANCE] = k_of_n(seeds_above(group["value"], chance + MARGIN), len(group))
    return row


def seed_summary(rows: pd.DataFrame, by: str = "model") -> pd.DataFrame:
    """Per test and ``by`` column: ``seed_row`` against the test's chance level, and that level."""
    return pd.DataFrame([{"test": test, by: name, **seed_row(group, CHANCE.get(test)), "chance": CHANCE.get(test)}
                         for (test, name), group in rows.groupby(["test", by], sort=False)])  # fmt: skip


def variant_rows(
    metrics: pd.DataFrame, order: list[str] | None = None, tests: tuple[str, ...] = VARIANT_TESTS
) -> pd.DataFrame:
    """Headline ``tests``, one row per condition and seed, with ``model`` = the condition; conditions in
    ``order`` (else as they appear), tests in headline order within each."""
    rows = headline(metrics)
    rows = rows[rows.test.isin(tests)].assign(model=lambda r: r.condition)
    if order is not None:
        rows = rows.sort_values(by="condition", key=lambda s: s.map(order.index), kind="stable")
    return rows


def variant_table(
    metrics: pd.DataFrame, order: list[str] | None = None, tests: tuple[str, ...] = VARIANT_TESTS
) -> pd.DataFrame:
    """Headline ``tests`` per condition (mean over seeds, bootstrap 95% CI, per seed, seeds above chance), conditions
    in ``order``."""
    return seed_summary(variant_rows(metrics, order, tests), by="condition").reset_index(drop=True)


def show(row: dict) -> str:
    """A summary row as text: mean (bootstrap 95% CI over seeds; per seed; seeds above chance)."""
    above = f"; {row[ABOVE_CHANCE]} at least {100 * MARGIN:.0f} points above chance" if row.get(ABOVE_CHANCE) else ""
    return (
        f"{row['mean']:.1%} (bootstrap 95% CI {row['ci95_low']:.1%}-{row['ci95_high']:.1%}; seeds "
        f"{row['per seed']}{above})"
    )


def condition_lines(table: pd.DataFrame, names: list[str] | None = None) -> list[str]:
    """One Markdown bullet per condition of a ``variant_table``: relations and attributes 4-way with CIs."""
    row = {(r["test"], r["condition"]): r for r in table.to_dict("records")}
    names = names or list(dict.fromkeys(table["condition"]))
    return [f"* {name}: relations 4-way {show(row[('relation 4-way', name)])}, "
            f"attributes {show(row[('attribute 4-way', name)])}."
            for name in names if ("relation 4-way", name) in row]  # fmt: skip


def save_chapter_results(
    chapter: str,
    scale: str,
    root: Path | None,
    metrics: pd.DataFrame,
    config: dict,
    extra: dict,
    tables: dict[str, pd.DataFrame],
) -> Path:
    """Write a chapter's ``metrics.csv`` and ``run.json`` (its config, ``extra`` bookkeeping and ``tables``
    as records) under ``<root>/<chapter>/<scale>[-smoke]``."""
    smoke = config["parameters"]["smoke"]
    folder = results_dir(chapter, scale + ("-smoke" if smoke else ""), root)
    record = {"chapter": chapter, "scale": scale, **config, **extra}
    record |= {name: table.to_dict("records") for name, table in tables.items()}
    write_results(folder, metrics, record)
    return folder


def save_full_chapter_results(
    chapter: str, metrics: pd.DataFrame, config: object, root: Path | None, total_seconds: float,
    extra: dict | None = None,
) -> Path:  # fmt: skip
    """Write a chapter's full-scale ``metrics.csv`` and ``run.json`` (its ``FullScaleConfig`` and ``extra``) under
    ``<root>/<chapter>/full``."""
    record = {"parameters": {"smoke": False}, "full_scale": dataclasses.asdict(config), **(extra or {})}
    return save_chapter_results(chapter, "full", root, metrics, record, {"total_wall_seconds": total_seconds}, {})


def start_chapter(scale: str, torch_threads: int) -> float:
    """Refuse a scale other than ``toy`` or ``full``, set torch's CPU threads (0 keeps torch's default) and pandas'
    display precision; returns the start time."""
    if scale not in ("toy", "full"):
        raise ValueError(f"scale must be 'toy' or 'full', not {scale!r}")
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    pd.set_option("display.precision", 3)
    return time.perf_counter()


def start_toy_chapter(chapter: str, scale: str, torch_threads: int, why: str) -> float:
    """``start_chapter`` for a chapter that runs at ``toy`` scale only (``why`` says what full scale would need)."""
    if scale != "toy":
        raise ValueError(f"chapter {chapter} runs at scale='toy' only (got {scale!r}): {why}")
    return start_chapter(scale, torch_threads)


def stalled_lines(transition_table: pd.DataFrame) -> list[str]:
    """One Markdown bullet per variant whose training ended without passing its last stage (at the stage's cap or
    where its step budget ran out), naming the seeds and the stage each stopped in."""
    table = transition_table.assign(budget_spent=transition_table.get("budget spent", False))
    checked = table[table.target.notna() | table.budget_spent]
    last = checked.groupby(["variant", "seed"], sort=False).tail(1)
    lines = []
    for variant, group in last[last["passed at"].isna()].groupby("variant", sort=False):
        where = ", ".join(f"{seed} ({stage}, {'budget spent' if spent else 'cap'})"
                          for seed, stage, spent in zip(group.seed, group.stage, group.budget_spent))  # fmt: skip
        lines.append(f"* {variant}: stopped without passing its held-out check on seed(s) {where}.")
    return lines
