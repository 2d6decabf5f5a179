"""Chapter 4, "The prompt decides what is read": the same trained toy LLaVA scores the same images and
captions several ways (VQAScore with several questions, the caption's own likelihood, the "Yes" prior),
where its score's attribution falls on 3- and 4-object scenes, and how the two pair protocols treat a prior."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from analysis_lib.core.progress import seed_progress
from analysis_lib.data.benchmarks import WhatsUpItem, load_image, load_mmvp_vlm, load_whatsup_controlled
from analysis_lib.data.toy_benchmarks import ATTRIBUTE_FILE, MMVP_FOLDER, RELATION_FILE, export_multi_object_set
from analysis_lib.data.toyworld import VQA_QUESTION
from analysis_lib.full.full_scale import (
    FullScaleConfig,
    benchmark_records,
    load_full_benchmarks,
    process_device,
    score_benchmark,
)
from analysis_lib.full.registry import load_scorer
from analysis_lib.models.prompts import PromptFormat
from analysis_lib.scoring.attribution import attribution_shares, patch_attributions
from analysis_lib.scoring.evaluation import (
    MMVP_TEXT_TEMPLATE,
    mmvp_records,
    mmvp_scores,
    whatsup_option_scores,
    whatsup_records,
)
from analysis_lib.scoring.score_cache import cached_attributions, cached_scores
from analysis_lib.scoring.scorers import CaptionLikelihoodScorer, VQAScorer, mean_colour, score_options
from analysis_lib.stats.metrics import bootstrap_ci, mmvp_pair_units, option_correct
from analysis_lib.stats.seed_stats import k_of_n
from analysis_lib.toy.pipeline import ToyModels, seed_jobs, toy_models, train_toy_models
from analysis_lib.toy.toy_recipe import chapter_setup
from analysis_lib.toy.toy_runs import (
    CHANCE,
    CLIP_NAME,
    LLAVA_NAME,
    condition_lines,
    evaluation_sets,
    model_scorers,
    save_chapter_results,
    save_full_chapter_results,
    seed_row,
    show,
    variant_rows,
    variant_table,
)
from analysis_lib.toy.toy_setup import EVAL_SEED, ToySetup

T2V = "VQAScore: t2v question (default)"
TEMPLATES = {
    T2V: VQA_QUESTION,
    "VQAScore: no 'please answer yes or no'": 'Does this figure show "{}"?',
    "VQAScore: 'image' for 'figure'": 'Does this image show "{}"? Please answer yes or no.',
    "VQAScore: 'is this'": 'Is this "{}"? Please answer yes or no.',
}
"""VQAScore question templates, written in the toy vocabulary (the toy LLaVA was trained on the first only)."""
CAPTION_ONLY = "caption likelihood: no question"
DESCRIBE = "caption likelihood: after 'Describe the image.'"
DESCRIBE_QUESTION = "Describe the image."  # the question of the curriculum's describe task (toyworld)
PRIOR = "'Yes' with no caption (prior)"
ORDER = [CLIP_NAME, *TEMPLATES, CAPTION_ONLY, DESCRIBE, PRIOR]
ATTRIBUTED = (T2V, CAPTION_ONLY, DESCRIBE)
OBJECT_COUNTS = (2, 3, 4)
MULTI_SCENES, SMOKE_MULTI_SCENES = 96, 8
PROTOCOL_SCORES = (T2V, CAPTION_ONLY)
CORRECTIONS = ("as scored", "minus caption prior c(t)", "minus image prior b(i)")


class CaptionBlindScorer:
    """The "Yes" prior: VQAScore with the caption left out, so every caption of an image scores the same."""

    def __init__(self, scorer: VQAScorer) -> None:
        self.scorer = scorer

    def score_pairs(self, images, pairs) -> np.ndarray:
        """The empty caption's VQAScore for the image of each ``(image_index, text)`` pair."""
        return self.scorer.score_pairs(images, [(index, "") for index, _ in pairs])


def llava_scorings(llava: LlavaForConditionalGeneration, processor: LlavaProcessor, fmt: PromptFormat) -> dict:
    """Every way the chapter scores a caption with one LLaVA (toy or LLaVA-1.5) in its prompt format: VQAScore with
    each question template, the caption's likelihood with no question and after the describe question."""
    out: dict[str, object] = {}
    for name, template in TEMPLATES.items():
        out[name] = VQAScorer(llava, processor, dataclasses.replace(fmt, question_template=template))
    out[CAPTION_ONLY] = CaptionLikelihoodScorer(llava, processor, fmt)
    out[DESCRIBE] = CaptionLikelihoodScorer(llava, processor, fmt, question=DESCRIBE_QUESTION)
    return out


def scorings(models: ToyModels) -> dict[str, object]:
    """Every way the chapter scores a caption with one seed's toy LLaVA, its "Yes" prior, and CLIP for reference."""
    out = {CLIP_NAME: model_scorers(models)[CLIP_NAME]}
    out |= llava_scorings(models.llava, models.llava_processor, models.prompt_format)
    out[PRIOR] = CaptionBlindScorer(out[T2V])
    return {name: cached_scores(scorer) for name, scorer in out.items()}


def prompt_full(config: FullScaleConfig, folder: Path) -> pd.DataFrame:
    """``config``'s LLaVA (LLaVA-1.5-7B unless set; through the registry) scored by every ``llava_scorings`` way on
    every full-scale benchmark, one score log per scoring under ``folder``; ``condition`` names the scoring."""
    base = load_scorer(config.llava_model, device=process_device(config.device), dtype=config.dtype,
                       batch_size=config.batch_size, allow_download=config.allow_download)  # fmt: skip
    benchmarks, records = load_full_benchmarks(config), []
    for name, scorer in llava_scorings(base.model, base.processor, base.format).items():
        for benchmark, items in benchmarks.items():
            scores = score_benchmark(scorer, config.llava_model, benchmark, items, Path(folder), config.batch_size)
            rows = benchmark_records(benchmark, items, scores)
            records += [{"model": LLAVA_NAME, "condition": name, "seed": 0, **row} for row in rows]
    return pd.DataFrame(records)


def is_log_score(name: str) -> bool:
    """Whether a scoring's scores are already log-probabilities (caption likelihoods) rather than VQAScores."""
    return name in (CAPTION_ONLY, DESCRIBE)


def log_scores(name: str, scores: np.ndarray) -> np.ndarray:
    """Scores on the log scale: VQAScore -> mean log-probability of its answer tokens; likelihoods as they are."""
    return scores if is_log_score(name) else np.log(scores)


@dataclass
class Scored:
    """One seed's raw scores of one scoring: relation set ``N x 4``, attribute set ``N x 4``, pairs ``P x 2 x 2``."""

    relations: np.ndarray
    attributes: np.ndarray
    pairs: np.ndarray


def score_sets(scorers: dict[str, object], bench_dir: Path, seed: int) -> tuple[list[dict], dict[str, Scored]]:
    """Metric records of every scoring on chapter 1's three sets and the raw scores behind them. The prior's
    relation and attribute records are left out: all options of an image tie, and What'sUp's 4-way rule
    gives a tie to the gold option."""
    relations = load_whatsup_controlled(bench_dir / RELATION_FILE)
    attributes = load_whatsup_controlled(bench_dir / ATTRIBUTE_FILE)
    pairs = load_mmvp_vlm(bench_dir / MMVP_FOLDER)
    records, raw = [], {}
    for name, scorer in scorers.items():
        scored = Scored(whatsup_option_scores(scorer, relations), whatsup_option_scores(scorer, attributes),
                        mmvp_scores(scorer, pairs))  # fmt: skip
        rows = mmvp_records(pairs, scored.pairs, "pairs", seed)
        if name != PRIOR:
            rows += whatsup_records(relations, scored.relations, "relations", seed)
            rows += whatsup_records(attributes, scored.attributes, "attributes", seed, False)
        raw[name] = scored
        model = CLIP_NAME if name == CLIP_NAME else LLAVA_NAME
        records += [{"model": model, "condition": name, "seed": seed, **row} for row in rows]
    return records, raw


def blank_image(scorer: VQAScorer) -> Image.Image:
    """An image of the processor's mean colour only (0 after normalisation): no objects at all."""
    side = scorer.input_side or scorer.model.config.vision_config.image_size
    return Image.new("RGB", (side, side), mean_colour(scorer.processor.image_processor))


def caption_prior(scorer: VQAScorer, name: str, texts: list[str]) -> dict[str, float]:
    """c(t): each text's log-score on the blank image, the part of a score that the caption alone sets."""
    unique = sorted(set(texts))
    scores = log_scores(name, scorer.score_pairs([blank_image(scorer)], [(0, t) for t in unique]))
    return dict(zip(unique, scores))


def _protocol_row(score: str, correction: str, test: str, units: np.ndarray, seed: int) -> dict:
    """One row of the pair-protocol table: accuracy over ``units`` with its bootstrap CI."""
    low, high = bootstrap_ci(units, seed=seed)
    return {"score": score, "correction": correction, "test": test, "seed": seed, "value": float(np.mean(units)),
            "ci_low": low, "ci_high": high, "n_units": len(units)}  # fmt: skip


def protocol_rows(scorers: dict[str, object], raw: dict[str, Scored], bench_dir: Path, seed: int) -> list[dict]:
    """What'sUp-style (one image, four captions) relation accuracy and MMVP-style (one caption, two images)
    spatial pair accuracy of the log scores as scored, minus a caption-only term c(t) (the log-score on a blank
    image), minus an image-only term b(i) (the log "Yes" prior), and of each term alone."""
    options = [item.caption_options for item in load_whatsup_controlled(bench_dir / RELATION_FILE)]
    pairs = load_mmvp_vlm(bench_dir / MMVP_FOLDER)
    spatial = np.array([pair.pattern == "Spatial" for pair in pairs])
    statements = [[MMVP_TEXT_TEMPLATE.format(s) for s in pair.statements] for pair in pairs]
    texts = [t for o in options for t in o] + [t for s in statements for t in s]
    b_rel, b_pairs = np.log(raw[PRIOR].relations[:, :1]), np.log(raw[PRIOR].pairs[:, :, :1])  # per image
    rows = []
    for name in PROTOCOL_SCORES:
        prior = caption_prior(scorers[name], name, texts)
        c_rel = np.array([[prior[t] for t in o] for o in options])
        c_pairs = np.array([[[prior[t] for t in s]] * 2 for s in statements])
        rel, pair = log_scores(name, raw[name].relations), log_scores(name, raw[name].pairs)
        variants = dict(zip(CORRECTIONS, [(rel, pair), (rel - c_rel, pair - c_pairs), (rel - b_rel, pair - b_pairs)]))
        for correction, (r, p) in variants.items():
            rows.append(_protocol_row(name, correction, "relation 4-way", option_correct(r).astype(float), seed))
            rows.append(_protocol_row(name, correction, "MMVP-style spatial pairs", mmvp_pair_units(p[spatial]), seed))
        rows.append(_protocol_row(name, "c(t) alone", "relation 4-way", option_correct(c_rel).astype(float), seed))
        rows.append(_protocol_row(name, "c(t) alone", "MMVP-style spatial pairs",
                                  mmvp_pair_units(c_pairs[spatial]), seed))  # fmt: skip
    rows.append(
        _protocol_row(
            PRIOR, "b(i) alone", "MMVP-style spatial pairs", mmvp_pair_units(b_pairs[spatial].repeat(2, -1)), seed
        )
    )
    return rows


def multi_object_set(setup: ToySetup, n_objects: int, smoke: bool) -> tuple[list[WhatsUpItem], list[list[tuple]]]:
    """The chapter's ``n_objects``-object set (the same for every seed), exported in What'sUp's format and read
    back through its loader, with every object's cell per item (the named two first)."""
    n = SMOKE_MULTI_SCENES if smoke else MULTI_SCENES
    path = export_multi_object_set(setup.world, n, n_objects, EVAL_SEED + 40 + n_objects)
    cells = [[tuple(cell) for cell in entry["object_cells"]] for entry in json.loads(path.read_text())]
    return load_whatsup_controlled(path), cells


def log_score_fn(name: str, scorer: VQAScorer, captions: list[str]):
    """The log-score of caption i with image i as a function of a batch of pixel values (for captum)."""
    if is_log_score(name):
        return lambda pixels: scorer.score_batch(pixels, captions)
    return lambda pixels: torch.log(scorer.score_batch(pixels, captions))


def region_shares(attributions: np.ndarray, cells: list[list[tuple]]) -> pd.DataFrame:
    """Per image: the share of the absolute attribution on the named objects' patches (the first two cells), on
    the distractors' and elsewhere (the objects sit one per patch)."""
    groups = [{"named objects": c[:2], "distractors": c[2:]} for c in cells]
    return pd.DataFrame([attribution_shares(attr, group) for attr, group in zip(attributions, groups)])


def multi_object_rows(
    setup: ToySetup, scorers: dict[str, object], seed: int, smoke: bool
) -> tuple[list[dict], list[dict], dict]:
    """On 2-, 3- and 4-object scenes, per attributed scoring: relation 4-way accuracy of the named pair (metric
    records), the mean attribution share per region (rows) and one 4-object example's maps."""
    records, shares, example = [], [], {}
    for n_objects in OBJECT_COUNTS:
        items, cells = multi_object_set(setup, n_objects, smoke)
        images = [load_image(item.image_path) for item in items]
        options = [list(item.caption_options) for item in items]
        gold = [o[0] for o in options]
        for name in ATTRIBUTED:
            scorer = scorers[name]
            correct = option_correct(score_options(scorer, images, options)).astype(float)
            low, high = bootstrap_ci(correct, seed=seed)
            records.append({"model": LLAVA_NAME, "condition": name, "seed": seed,
                            "benchmark": f"{n_objects}-object scenes", "metric": "relation 4-way",
                            "value": correct.mean(), "ci_low": low, "ci_high": high,
                            "n_units": len(correct)})  # fmt: skip
            patch = scorer.model.config.vision_config.patch_size
            attributions = cached_attributions(scorer, images, gold, not is_log_score(name), patch)
            for region, value in region_shares(attributions, cells).mean().items():
                shares.append({"condition": name, "objects": n_objects, "region": region, "seed": seed,
                               "value": value, "n_units": len(items)})  # fmt: skip
            if n_objects == max(OBJECT_COUNTS):
                example[name] = attributions[0]
        if n_objects == max(OBJECT_COUNTS):
            example["image"], example["caption"] = images[0], gold[0]
    return records, shares, example


@dataclass
class PromptRun:
    """Everything chapter 4 shows: scores (``condition`` = scoring), attribution shares, pair-protocol rows."""

    metrics: pd.DataFrame
    shares: pd.DataFrame
    protocols: pd.DataFrame
    example: dict
    seconds: dict[str, dict[int, float]]
    config: dict


def prompt_experiment(
    seeds: list[int], device: str, clip_steps: int, smoke: bool, progress: bool = True, workers: int = 0
) -> PromptRun:
    """Per seed: load chapter 1's toy models (those not cached trained first, in ``workers`` processes), score
    chapter 1's sets every way, attribute on multi-object scenes and read the two pair protocols' priors."""
    setup = chapter_setup(clip_steps, smoke)
    train_toy_models(seed_jobs([setup], seeds), workers, device, progress)
    bench_dir = evaluation_sets(setup, smoke)
    records, shares, protocols, example = [], [], [], {}
    seconds: dict[str, dict[int, float]] = {"scoring": {}, "multi-object": {}}
    for seed in seed_progress(seeds, "04_prompt_weighting"):
        models = toy_models(setup, seed, device, progress)
        scorers = scorings(models)
        start = time.perf_counter()
        rows, raw = score_sets(scorers, bench_dir, seed)
        records += rows
        protocols += protocol_rows(scorers, raw, bench_dir, seed)
        seconds["scoring"][seed] = time.perf_counter() - start
        start = time.perf_counter()
        rows, seed_shares, example = multi_object_rows(setup, scorers, seed, smoke)
        records += rows
        shares += seed_shares
        seconds["multi-object"][seed] = time.perf_counter() - start
    config = {
        "parameters": {"seeds": seeds, "device": device, "clip_steps": clip_steps, "smoke": smoke},
        "eval_seed": EVAL_SEED,
        "setup": dataclasses.asdict(setup),
        "templates": TEMPLATES,
        "describe_question": DESCRIBE_QUESTION,
        "multi_object_scenes": SMOKE_MULTI_SCENES if smoke else MULTI_SCENES,
        "example_seed": seeds[-1],
    }
    return PromptRun(pd.DataFrame(records), pd.DataFrame(shares), pd.DataFrame(protocols), example, seconds, config)


def comparison(run: PromptRun) -> pd.DataFrame:
    """Headline tests per scoring: mean over seeds with its 95% CI and the per-seed values."""
    tests = (
        "relation 4-way",
        "relation 2-way",
        "attribute 4-way",
        "MMVP-style spatial pairs",
        "MMVP-style colour pairs",
    )
    return variant_table(run.metrics, ORDER, tests)


def _summary(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``seed_row`` per ``keys``, against chance where the rows name their ``test``."""
    out = []
    for values, group in rows.groupby(keys, sort=False):
        chance = CHANCE.get(group["test"].iloc[0]) if "test" in group else None
        out.append(dict(zip(keys, values)) | seed_row(group, chance))
    return pd.DataFrame(out)


def share_summary(run: PromptRun) -> pd.DataFrame:
    """Attribution share per scoring, object count and region: mean over seeds with its 95% CI."""
    return _summary(run.shares, ["condition", "objects", "region"])


def multi_object_accuracy(run: PromptRun) -> pd.DataFrame:
    """Relation 4-way accuracy of the named pair on 2-, 3- and 4-object scenes per scoring, over seeds."""
    rows = run.metrics[run.metrics.benchmark.str.endswith("-object scenes")]
    return _summary(rows.rename(columns={"benchmark": "scenes", "metric": "test"}), ["condition", "scenes"])


def protocol_summary(run: PromptRun) -> pd.DataFrame:
    """The pair-protocol table: accuracy per score, correction and test, over seeds."""
    return _summary(run.protocols, ["score", "correction", "test"])


def _share(shares: pd.DataFrame, condition: str, objects: int, region: str) -> float:
    """The seed-mean attribution share of one region."""
    row = shares[(shares.condition == condition) & (shares.objects == objects) & (shares.region == region)]
    return float(row["mean"].iloc[0])


def _protocol_changes(run: PromptRun) -> pd.DataFrame:
    """Per score, test and seed: how far each correction moves the accuracy as scored."""
    wide = run.protocols.pivot_table(index=["score", "test", "seed"], columns="correction", values="value")
    wide = wide.dropna(subset=list(CORRECTIONS)).reset_index()
    return wide.assign(**{f"{c} change": wide[c] - wide["as scored"] for c in CORRECTIONS[1:]})


def _per_seed_values(run: PromptRun) -> pd.DataFrame:
    """One row per seed: every scoring's headline accuracy (columns ``(test, scoring)``) and, on the most-object
    scenes, every attributed scoring's share per region (columns ``(region, scoring)``)."""
    scores = variant_rows(run.metrics, None, ("relation 4-way", "MMVP-style spatial pairs"))
    wide = scores.pivot_table(index="seed", columns=["test", "condition"], values="value")
    shares = run.shares[run.shares.objects == max(OBJECT_COUNTS)]
    return wide.join(shares.pivot_table(index="seed", columns=["region", "condition"], values="value"))


def target_checks(run: PromptRun) -> pd.DataFrame:
    """The chapter's targets (claim 4), each a per-seed difference that must meet its bound on every seed: the seed
    mean, the per-seed values, how many seeds meet it (k of n) and ``met`` (all of them).

    VQAScore is judged against both caption-likelihood baselines: with no question (a prompt layout the model never
    saw) and after the describe question it was trained on. (That each pair protocol cancels one prior is an
    identity of its arithmetic, tested in the unit tests, not a target.)"""
    seeds = _per_seed_values(run)
    rel, pairs, most = "relation 4-way", "MMVP-style spatial pairs", max(OBJECT_COUNTS)
    others = [name for name in TEMPLATES if name != T2V]
    named, distractors = seeds["named objects"], seeds["distractors"]
    checks = [
        ("VQAScore (t2v question) relation 4-way at least 10 points above the caption likelihood with no question",
         seeds[(rel, T2V)] - seeds[(rel, CAPTION_ONLY)], lambda v: v >= 0.1),
        ("VQAScore (t2v question) relation 4-way at least 10 points above the caption likelihood after the trained "
         "describe question", seeds[(rel, T2V)] - seeds[(rel, DESCRIBE)], lambda v: v >= 0.1),
        ("VQAScore (t2v question) MMVP-style spatial pairs at least 10 points above the caption likelihood with no "
         "question", seeds[(pairs, T2V)] - seeds[(pairs, CAPTION_ONLY)], lambda v: v >= 0.1),
        ("VQAScore (t2v question) MMVP-style spatial pairs at least 10 points above the caption likelihood after "
         "the trained describe question", seeds[(pairs, T2V)] - seeds[(pairs, DESCRIBE)], lambda v: v >= 0.1),
        (f"{most}-object scenes, question prompt: named objects' attribution share at least 20 points above the "
         "distractors'", named[T2V] - distractors[T2V], lambda v: v >= 0.2),
        (f"{most}-object scenes: named objects' share under the question prompt at least 5 points above under the "
         "caption likelihood", named[T2V] - named[CAPTION_ONLY], lambda v: v >= 0.05),
        ("every other question template within 10 points of the t2v question on relation 4-way (largest gap)",
         pd.concat([(seeds[(rel, name)] - seeds[(rel, T2V)]).abs() for name in others], axis=1).max(axis=1),
         lambda v: v <= 0.1),
    ]  # fmt: skip
    rows = []
    for target, values, ok in checks:
        k = int(ok(values).sum())
        rows.append({"target": target, "value": float(values.mean()),
                     "per seed": _per_seed(values), "seeds meeting it": k_of_n(k, len(values)),
                     "met": k == len(values)})  # fmt: skip
    return pd.DataFrame(rows)


def _object_line(shares: pd.DataFrame, accuracy: pd.DataFrame, name: str, count: int) -> str:
    """One Markdown bullet: a scoring's accuracy and attribution shares on ``count``-object scenes."""
    named, distractors = (_share(shares, name, count, r) for r in ("named objects", "distractors"))
    acc = accuracy[(accuracy.condition == name) & (accuracy.scenes == f"{count}-object scenes")].iloc[0]
    line = (f"* {count}-object scenes, {name}: relation 4-way of the named pair {show(acc)}; attribution "
            f"share on the named objects {named:.1%}, on the distractors {distractors:.1%}")  # fmt: skip
    if count > 2:
        line += f"; per object, a named object carries {(named / 2) / (distractors / (count - 2)):.1f}x a distractor's"
    return line + "."


def findings(table: pd.DataFrame, shares: pd.DataFrame, accuracy: pd.DataFrame, run: PromptRun) -> str:
    """The chapter's reading of its own numbers, as Markdown written from the summary tables."""
    lines = condition_lines(table, [name for name in ORDER if name != PRIOR])
    pairs = table[table.test == "MMVP-style spatial pairs"].set_index("condition")
    lines += [f"* MMVP-style spatial pairs, {name}: {show(pairs.loc[name])}." for name in ORDER]
    lines += [_object_line(shares, accuracy, name, count) for count in OBJECT_COUNTS for name in ATTRIBUTED]
    changes = _protocol_changes(run)
    seeds = ", ".join(str(seed) for seed in sorted(run.protocols.seed.unique()))
    for test, correction in (("relation 4-way", CORRECTIONS[1]), ("MMVP-style spatial pairs", CORRECTIONS[2])):
        for name in PROTOCOL_SCORES:
            moved = changes[(changes.test == test) & (changes.score == name)][f"{correction} change"]
            lines.append(f"* {test}, {name}, {correction}: accuracy changes by "
                         f"{', '.join(f'{v:+.1%}' for v in moved)} (seeds {seeds}).")  # fmt: skip
    return "\n".join(lines) + "\n\n" + "\n\n".join(verdict(table, run))


def _per_seed(values: pd.Series) -> str:
    """Per-seed differences as signed percentage points."""
    return ", ".join(f"{100 * v:+.1f}" for v in values)


def verdict(table: pd.DataFrame, run: PromptRun) -> list[str]:
    """What the numbers say about claim 4, as sentences written from the run."""
    mean = {(r["test"], r["condition"]): r["mean"] for r in table.to_dict("records")}
    rel, most = "relation 4-way", max(OBJECT_COUNTS)
    t2v, alone, describe = mean[(rel, T2V)], mean[(rel, CAPTION_ONLY)], mean[(rel, DESCRIBE)]
    worst = min((name for name in TEMPLATES if name != T2V), key=lambda name: mean[(rel, name)])
    named = run.shares[(run.shares.objects == most) & (run.shares.region == "named objects")]
    named = named.pivot_table(index="seed", columns="condition", values="value")
    gain = named[T2V] - named[CAPTION_ONLY]
    lines = [
        f"**Verdict.** Read through the question prompt, the toy LLaVA picks the relation {t2v:.1%} of the time; "
        f"the same model scoring the caption alone, with no question, {alone:.1%} (seed means). "
        + (f"After the describe question it was trained on, the caption's own likelihood reaches {describe:.1%}: in "
           "the toy it is the trained prompt that decides what is read, not the yes/no form of VQAScore."
           if describe >= t2v - 0.05 else
           f"After the describe question, the caption's likelihood reaches {describe:.1%}."),
        (f"The wording of the question matters: {worst} gives {mean[(rel, worst)]:.1%}"
         if mean[(rel, worst)] < t2v - 0.1 else
         f"The wording of the question matters little: the furthest template, {worst}, gives {mean[(rel, worst)]:.1%}")
        + " (the toy LLaVA was instruction-tuned on one yes/no question only).",
        f"On {most}-object scenes the share of the question prompt's attribution on the named objects minus the "
        f"caption likelihood's is {_per_seed(gain)} points per seed (seeds {', '.join(map(str, named.index))}; the "
        f"describe question's minus it: {_per_seed(named[DESCRIBE] - named[CAPTION_ONLY])}). "
        + ("A prompt shifts weight toward the query's objects on every seed"
           if (gain > 0).all() else
           f"A prompt does not shift weight toward the query's objects on every seed (mean {100 * gain.mean():+.1f} "
           "points, inside the seed spread)")
        + f"; every scoring puts {named.min().min():.0%} or more of its attribution on the named objects.",
        "The pair protocols behave as their arithmetic says: a caption-only term moves What'sUp-style accuracy and "
        "never MMVP-style pair accuracy; an image-only term the reverse. A score whose captions carry different "
        "priors is therefore judged differently by "
        "the two protocols.",
    ]  # fmt: skip
    return lines


def result_metrics(run: PromptRun) -> pd.DataFrame:
    """Scores, attribution shares and pair-protocol rows in the tidy metrics format."""
    shares = pd.DataFrame({
        "model": LLAVA_NAME, "condition": run.shares.condition, "benchmark": [
            f"attribution share, {n}-object scenes" for n in run.shares.objects],
        "metric": run.shares.region, "seed": run.shares.seed, "value": run.shares.value, "ci_low": np.nan,
        "ci_high": np.nan, "n_units": run.shares.n_units})  # fmt: skip
    protocols = pd.DataFrame({
        "model": LLAVA_NAME, "condition": [f"{s}; {c}" for s, c in zip(run.protocols.score, run.protocols.correction)],
        "benchmark": "pair protocols", "metric": run.protocols.test, "seed": run.protocols.seed,
        "value": run.protocols.value, "ci_low": run.protocols.ci_low, "ci_high": run.protocols.ci_high,
        "n_units": run.protocols.n_units})  # fmt: skip
    return pd.concat([run.metrics, shares, protocols], ignore_index=True)


def save_results(run: PromptRun, scale: str, root: Path | None, total_seconds: float, tables: dict) -> Path:
    """Write ``metrics.csv`` and ``run.json`` under ``<root>/04_prompt_weighting/<scale>[-smoke]``."""
    extra = {"total_wall_seconds": total_seconds, "wall_seconds": run.seconds}
    return save_chapter_results("04_prompt_weighting", scale, root, result_metrics(run), run.config, extra, tables)


ATTRIBUTION_GROUP = 2
"""Full-scale attribution ablates ``ATTRIBUTION_GROUP`` x ``ATTRIBUTION_GROUP`` ViT patches at a time (LLaVA-1.5's
24 x 24 patches as a 12 x 12 map: 144 forward passes per image and scoring instead of 576)."""


def relation_pair(items: list[WhatsUpItem], relations: tuple[str, str] = ("left_of", "right_of")) -> list[WhatsUpItem]:
    """The first object pair of What'sUp Controlled ``items`` photographed in both ``relations``: its two items."""
    by_pair: dict[tuple[str, str], dict[str, WhatsUpItem]] = {}
    for item in items:
        by_pair.setdefault(item.obj_pair, {})[item.relation] = item
    for photos in by_pair.values():
        if all(relation in photos for relation in relations):
            return [photos[relation] for relation in relations]
    raise ValueError(f"no object pair among {len(items)} items is photographed in both {relations}")


def attribution_full(config: FullScaleConfig, group: int = ATTRIBUTION_GROUP) -> tuple[list, dict, list[str]]:
    """On a real image pair (What'sUp Controlled-A's first object pair left of / right of each other), which patches
    move each ``ATTRIBUTED`` scoring of ``config``'s LLaVA: per image, the captum ablation map of the log-score of its
    own (gold) caption, ``group`` x ``group`` patches a feature. Returns the images, ``{(image index, scoring):
    map}`` and the two captions."""
    base = load_scorer(config.llava_model, device=process_device(config.device), dtype=config.dtype,
                       batch_size=config.batch_size, allow_download=config.allow_download)  # fmt: skip
    benchmarks = load_full_benchmarks(config)
    if "Controlled-A" not in benchmarks:
        raise ValueError("full-scale attribution reads What'sUp Controlled-A (controlled_images_dataset.json)")
    items = relation_pair(benchmarks["Controlled-A"])
    images, captions = [load_image(item.image_path) for item in items], [item.caption_options[0] for item in items]
    scorings = llava_scorings(base.model, base.processor, base.format)
    maps = {}
    for name in ATTRIBUTED:
        scorer = scorings[name]
        pixels = scorer.pixel_values(images)
        patch = scorer.model.config.vision_config.patch_size * group
        for index, attr in enumerate(patch_attributions(log_score_fn(name, scorer, captions), pixels, patch)):
            maps[(index, name)] = attr
    return images, maps, captions


def save_full_results(metrics: pd.DataFrame, config: FullScaleConfig, root: Path | None, total_seconds: float) -> Path:
    """Write a full-scale run's ``metrics.csv`` and ``run.json`` under ``<root>/04_prompt_weighting/full``."""
    return save_full_chapter_results("04_prompt_weighting", metrics, config, root, total_seconds)
