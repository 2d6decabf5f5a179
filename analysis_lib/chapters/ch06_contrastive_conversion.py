"""Chapter 6, "Is it the generative loss?": chapter 1's toy LLaVA converted into an embedding model by VLM2Vec's
recipe (peft DoRA, InfoNCE, last-token pooling) and scored with CLIP's own cosine protocol, with the recipe's
ablations and a conversion of the LLaVA whose LM was not pre-trained."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from analysis_lib.core.cache import cached_artifact
from analysis_lib.core.progress import seed_progress
from analysis_lib.full.full_scale import FullScaleConfig, score_models
from analysis_lib.toy import toy_recipe as recipe
from analysis_lib.toy.pipeline import seed_jobs, toy_models, train_toy_models, training_log
from analysis_lib.toy.toy_runs import (
    CLIP_NAME,
    LLAVA_NAME,
    VariantRun,
    budgeted,
    condition_lines,
    evaluation_sets,
    model_scorers,
    save_chapter_results,
    score_all,
    stalled_lines,
    train_variants,
    variant_table,
)
from analysis_lib.toy.toy_setup import EVAL_SEED, ToySetup
from analysis_lib.training.embedding_conversion import (
    TOY_QUERY,
    ConversionConfig,
    EmbeddingScorer,
    convert,
    toy_question,
)

VLM2VEC_ENTRY = "llava-1.5-7b-vlm2vec"
UNCONVERTED = "LLaVA, not converted (cosine)"
SCRATCH_VQA = "LLaVA, LM from scratch (VQAScore)"
MAIN = "converted LLaVA: DoRA r=8, t=0.02 (cosine)"
PROJECTOR_ONLY = "projector only"
"""Chapter 1's LLaVA stopped after its projector stage: LLaVA's stage 1, no instruction training (a control)."""
PROJECTOR_CONVERTED = "converted from the projector-only LLaVA (no instruction training)"
RANDOM_BATCHES = "converted: random batches (no relation groups)"
RECIPES = {
    MAIN: (recipe.MAIN, ConversionConfig()),
    "converted: LoRA r=8, t=0.02": (recipe.MAIN, ConversionConfig(use_dora=False)),
    "converted: DoRA r=32, t=0.02": (recipe.MAIN, ConversionConfig(rank=32)),
    "converted: DoRA r=8, t=0.07": (recipe.MAIN, ConversionConfig(temperature=0.07)),
    "converted from the LM-from-scratch LLaVA": (recipe.FROM_SCRATCH, ConversionConfig()),
    RANDOM_BATCHES: (recipe.MAIN, ConversionConfig(relation_groups=False)),
    PROJECTOR_CONVERTED: (PROJECTOR_ONLY, ConversionConfig()),
}
"""Each converted model: the LLaVA it starts from (a chapter-1 variant or ``PROJECTOR_ONLY``) and the recipe."""
ORDER = [CLIP_NAME, LLAVA_NAME, UNCONVERTED, *RECIPES, SCRATCH_VQA]
PILOT = {
    MAIN: RECIPES[MAIN][1],
    "converted: lr 3e-3": ConversionConfig(lr=3e-3),
    RANDOM_BATCHES: RECIPES[RANDOM_BATCHES][1],
}
"""The choices the recipe's pilot made (learning rate; batches of relation groups), re-run on seeds the chapter does
not report, each from chapter 1's LLaVA of that seed."""
TESTS = ("relation 4-way", "relation 2-way", "attribute 4-way", "MMVP-style spatial pairs", "MMVP-style colour pairs")
MARGIN = 0.2  # the converted model "beats CLIP" on relations if its seed mean is this far above CLIP's
RECIPE_TOLERANCE = 0.1  # a recipe choice "matters little" if it moves relation 4-way by less than this


def smoke_recipe(cfg: ConversionConfig, smoke: bool) -> ConversionConfig:
    """The recipe, or a seconds-long version of it for smoke runs (numbers meaningless)."""
    if not smoke:
        return cfg
    return dataclasses.replace(cfg, steps=1, batch_size=4, warmup=1, n_scenes=8, held_out=4, check_every=1)


def projector_only(setup: ToySetup) -> ToySetup:
    """``setup`` with its LLaVA trained through the first curriculum stage only (the projector, LM frozen)."""
    train = setup.llava_train
    return dataclasses.replace(setup, llava_train=dataclasses.replace(train, curriculum=train.curriculum[:1]))


def base_setups(clip_steps: int, smoke: bool) -> dict[str, ToySetup]:
    """The LLaVAs the recipes start from (before any step budget): chapter 1's, its LM-from-scratch variant and the
    projector-only one."""
    setups = {variant: recipe.toy_setup(clip_steps, smoke, variant) for variant in (recipe.MAIN, recipe.FROM_SCRATCH)}
    return {**setups, PROJECTOR_ONLY: projector_only(setups[recipe.MAIN])}


def converted_spec(setup: ToySetup, cfg: ConversionConfig, seed: int) -> dict:
    """What determines a converted LLaVA: its base LLaVA's spec, the conversion recipe and the seed."""
    return {"llava": setup.llava_spec(seed), "conversion": dataclasses.asdict(cfg), "seed": seed}


def converted_llava(
    setup: ToySetup, cfg: ConversionConfig, seed: int, device: str, progress: bool = True
) -> tuple[Path, bool]:
    """Convert (or load from the cache) the toy LLaVA of ``setup`` and ``seed``: ``(folder, reused)``; the folder
    holds the merged weights (safetensors), the processor and the training log."""
    models = toy_models(setup, seed, device, progress)

    def build(folder: Path) -> None:
        base = LlavaForConditionalGeneration.from_pretrained(models.folders["llava"]).to(device)
        merged, log = convert(base, models.llava_processor, setup.world, cfg, seed, progress)
        merged.cpu().save_pretrained(folder)
        models.llava_processor.save_pretrained(folder)
        (folder / "training_log.json").write_text(json.dumps(log))

    return cached_artifact("converted-llava", converted_spec(setup, cfg, seed), build)


def toy_embedding_scorer(model: LlavaForConditionalGeneration, processor: LlavaProcessor) -> EmbeddingScorer:
    """The cosine scorer with the toy's query: the image and the toy question about the objects the captions name."""
    return EmbeddingScorer(model, processor, TOY_QUERY, toy_question)


@dataclass
class ConversionRun:
    """Everything chapter 6 shows: scores per condition, converted-model folders and wall seconds per seed."""

    metrics: pd.DataFrame
    folders: dict[str, dict[int, Path]]
    seconds: dict[str, dict[int, float]]
    config: dict


def conversion_experiment(
    seeds: list[int], device: str, clip_steps: int, smoke: bool, progress: bool = True, workers: int = 0
) -> ConversionRun:
    """Per seed: CLIP, LLaVA (VQAScore), LLaVA not converted and every converted model (cosine), and the
    LM-from-scratch LLaVA (VQAScore), all on chapter 1's sets (the LLaVAs not cached trained first, in ``workers``
    processes)."""
    setups = base_setups(clip_steps, smoke)
    train_variants(
        {recipe.FROM_SCRATCH: setups[recipe.FROM_SCRATCH]},
        seeds,
        setups[recipe.MAIN],
        device,
        progress,
        workers,
    )
    bench_dir = evaluation_sets(setups[recipe.MAIN], smoke)
    records, folders, seconds = [], {name: {} for name in RECIPES}, {name: {} for name in ("baselines", *RECIPES)}
    for seed in seed_progress(seeds, "06_contrastive_conversion"):
        start = time.perf_counter()
        bases = {
            **setups,
            recipe.FROM_SCRATCH: budgeted(setups[recipe.FROM_SCRATCH], seed, setups[recipe.MAIN]),
        }
        models = toy_models(setups[recipe.MAIN], seed, device, progress)
        scratch = toy_models(bases[recipe.FROM_SCRATCH], seed, device, progress)
        scorers = {**model_scorers(models), UNCONVERTED: toy_embedding_scorer(models.llava, models.llava_processor),
                   SCRATCH_VQA: model_scorers(scratch)[LLAVA_NAME]}  # fmt: skip
        records += score_all(scorers, bench_dir, seed)
        seconds["baselines"][seed] = time.perf_counter() - start
        for name, (variant, cfg) in RECIPES.items():
            start = time.perf_counter()
            folder, _ = converted_llava(bases[variant], smoke_recipe(cfg, smoke), seed, device, progress)
            model = LlavaForConditionalGeneration.from_pretrained(folder).to(device).eval()
            scorer = toy_embedding_scorer(model, LlavaProcessor.from_pretrained(folder, use_fast=False))
            records += score_all({name: scorer}, bench_dir, seed)
            folders[name][seed], seconds[name][seed] = folder, time.perf_counter() - start
    metrics = pd.DataFrame(records).assign(condition=lambda r: r.model)
    config = {
        "parameters": {"seeds": seeds, "device": device, "clip_steps": clip_steps, "smoke": smoke},
        "eval_seed": EVAL_SEED,
        "query_template": TOY_QUERY,
        "recipes": {
            name: {"base": variant, **dataclasses.asdict(smoke_recipe(cfg, smoke))}
            for name, (variant, cfg) in RECIPES.items()
        },
    }
    return ConversionRun(metrics, folders, seconds, config)


def pilot_checks(
    seeds: list[int], device: str, clip_steps: int, smoke: bool, progress: bool = True, workers: int = 0
) -> pd.DataFrame:
    """Each ``PILOT`` recipe converted on each of ``seeds`` (seeds the chapter does not report; their chapter-1
    LLaVAs trained first in ``workers`` processes when not cached): every held-out check, one row each."""
    setup = recipe.toy_setup(clip_steps, smoke, recipe.MAIN)
    train_toy_models(seed_jobs([setup], seeds), workers, device, progress)
    rows = []
    for seed in seeds:
        for name, cfg in PILOT.items():
            folder, _ = converted_llava(setup, smoke_recipe(cfg, smoke), seed, device, progress)
            (stage,) = training_log(folder)["stages"]
            rows += [{"seed": seed, "recipe": name, "passed at": stage["passed_at"], **check}
                     for check in stage["checks"]]  # fmt: skip
    return pd.DataFrame(rows)


def _pilot_ends(checks: pd.DataFrame) -> pd.DataFrame:
    """Each pilot run's last check, with ``ended``: the step its check passed at, or the cap it ran to."""
    last = checks.groupby(["seed", "recipe"], sort=False).tail(1)
    ended = [f"passed at {int(p)}" if pd.notna(p) else f"cap ({int(s)} steps)"
             for p, s in zip(last["passed at"], last.step)]  # fmt: skip
    return last.assign(ended=ended).reset_index(drop=True)


def pilot_table(checks: pd.DataFrame) -> pd.DataFrame:
    """Per pilot seed and recipe: how it ended (passed at a step, or the cap) and its last check's relation 4-way and
    attribute retrieval."""
    return _pilot_ends(checks)[["seed", "recipe", "ended", "relation 4-way", "attribute"]]


def _pilot_rank(row: dict) -> float:
    """A pilot run's standing by the chapter's rule: the step it passed at (lower is better); a run that did not
    pass ranks after every one that did, by its relation retrieval at the cap."""
    passed = row["passed at"]
    return float(passed) if pd.notna(passed) else 1e9 - row["relation 4-way"]


def pilot_reading(checks: pd.DataFrame) -> str:
    """Per pilot seed, how each run ended and whether the chapter's recipe did at least as well as each alternative
    (passed no later or, none passing, no lower relation retrieval at the cap): the pilot's choices replicate or not."""
    lines = []
    for seed, runs in _pilot_ends(checks).groupby("seed", sort=False):
        rows = {r["recipe"]: r for r in runs.to_dict("records")}
        ends = "; ".join(f"{name}: {r['ended']}, relation {r['relation 4-way']:.1%}" for name, r in rows.items())
        beaten = [name for name in PILOT if name != MAIN and _pilot_rank(rows[name]) < _pilot_rank(rows[MAIN])]
        verdict = ("the chapter's recipe did at least as well as every alternative: the pilot's choices replicate on "
                   "this seed" if not beaten else
                   f"{', '.join(beaten)} did better than the chapter's recipe: the pilot's choice does not "
                   "replicate on this seed")  # fmt: skip
        lines.append(f"* Seed {seed}: {ends}. By the rule, {verdict}.")
    return "\n".join(lines)


def comparison(run: ConversionRun) -> pd.DataFrame:
    """The chapter's tests per condition (mean over seeds, 95% CI, per seed), conditions in the chapter's order."""
    return variant_table(run.metrics, ORDER, TESTS)


def training_run(run: ConversionRun) -> VariantRun:
    """The converted models' folders as a ``VariantRun``, so that their training logs read like LLaVA's."""
    return VariantRun(run.metrics, run.folders, run.seconds)


def training_seconds(run: ConversionRun) -> pd.DataFrame:
    """Wall seconds each conversion trained (as recorded when it was built; a cached model keeps its first time)."""
    rows = {name: {seed: training_log(folder)["train_seconds"] for seed, folder in by_seed.items()}
            for name, by_seed in run.folders.items()}  # fmt: skip
    return pd.DataFrame(rows).rename_axis("seed")


def check_figure(curves: pd.DataFrame) -> plt.Figure:
    """The held-out retrieval check over conversion steps, one line per seed, one panel per converted model."""
    names = list(dict.fromkeys(curves["variant"]))
    rows = -(-len(names) // 3)
    fig, axes = plt.subplots(rows, 3, figsize=(9.5, 2.7 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, name in zip(axes.flat, names):
        sns.lineplot(data=curves[curves.variant == name], x="step", y="value", hue="seed", ax=ax,
                     palette="colorblind", legend=ax is axes[0, 0])  # fmt: skip
        ax.set_title(name.removeprefix("converted LLaVA: ").removeprefix("converted "), fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("conversion step")
        ax.set_ylabel("held-out check" if ax in axes[:, 0] else "")
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    fig.suptitle("Held-out check during conversion (the lower of relation and attribute retrieval)", fontsize=9)
    fig.tight_layout()
    return fig


def _means(table: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Seed means by (test, condition)."""
    return {(r["test"], r["condition"]): r["mean"] for r in table.to_dict("records")}


def target_checks(table: pd.DataFrame) -> pd.DataFrame:
    """The chapter's targets, set before the run (claim 6), each marked met or not on the seed means."""
    mean = _means(table)
    rel, spatial = "relation 4-way", "MMVP-style spatial pairs"
    recipe_changes = [abs(mean[(rel, name)] - mean[(rel, MAIN)]) for name in list(RECIPES)[1:4]]
    scratch = "converted from the LM-from-scratch LLaVA"
    checks = [
        (f"the converted LLaVA beats CLIP on relation 4-way by >= {MARGIN:.0%} (claim 6)",
         mean[(rel, MAIN)] - mean[(rel, CLIP_NAME)], lambda v: v >= MARGIN),
        (f"the converted LLaVA beats CLIP on MMVP-style spatial pairs by >= {MARGIN:.0%}",
         mean[(spatial, MAIN)] - mean[(spatial, CLIP_NAME)], lambda v: v >= MARGIN),
        ("the converted LLaVA keeps attributes within 10 points of CLIP",
         mean[("attribute 4-way", MAIN)] - mean[("attribute 4-way", CLIP_NAME)], lambda v: v >= -0.1),
        (f"no recipe choice (LoRA vs DoRA, rank 8 vs 32, temperature 0.02 vs 0.07) moves relation 4-way by "
         f"{RECIPE_TOLERANCE:.0%} or more (largest change)", max(recipe_changes), lambda v: v < RECIPE_TOLERANCE),
        (f"the LLaVA whose LM was not pre-trained, converted, still beats CLIP on relation 4-way by >= {MARGIN:.0%}",
         mean[(rel, scratch)] - mean[(rel, CLIP_NAME)], lambda v: v >= MARGIN),
    ]  # fmt: skip
    return pd.DataFrame([{"target": t, "value": v, "met": bool(ok(v))} for t, v, ok in checks])


def findings(table: pd.DataFrame, transition_table: pd.DataFrame) -> str:
    """The chapter's reading of its own numbers, as Markdown written from the comparison table."""
    mean = _means(table)
    rel, spatial = "relation 4-way", "MMVP-style spatial pairs"
    scratch = "converted from the LM-from-scratch LLaVA"
    lines = condition_lines(table, ORDER) + stalled_lines(transition_table)
    gap = mean[(rel, MAIN)] - mean[(rel, CLIP_NAME)]
    verdict = "beats" if gap >= MARGIN else "does not clearly beat"
    lines.append(f"* Under CLIP's own protocol (cosine between two embeddings), the converted LLaVA {verdict} CLIP on "
                 f"relations: {100 * gap:+.1f} points of relation 4-way ({mean[(rel, MAIN)]:.1%} against "
                 f"{mean[(rel, CLIP_NAME)]:.1%}, seed means); the generative LLaVA reads {mean[(rel, LLAVA_NAME)]:.1%} "
                 "by VQAScore.")  # fmt: skip
    pairs = mean[(spatial, MAIN)]
    lines.append(f"* MMVP-style spatial pairs: converted {pairs:.1%}, CLIP {mean[(spatial, CLIP_NAME)]:.1%}.")
    if mean[(rel, MAIN)] - pairs >= MARGIN:
        lines.append("  Lower than its relation 4-way: a pair is right only if, for each statement, the right one of "
                     "two images scores higher, so cosines of two different images' queries are compared; choosing "
                     "among captions for one image compares cosines of one query.")  # fmt: skip
    lines.append(f"* The same LLaVA before conversion, read the same way (last token, cosine), scores "
                 f"{mean[(rel, UNCONVERTED)]:.1%} on relations (chance 25%): a generative LLaVA's last hidden "
                 "state is not an embedding of image and question; contrastive fine-tuning makes it one.")  # fmt: skip
    for name in list(RECIPES)[1:]:
        change = mean[(rel, name)] - mean[(rel, MAIN)]
        lines.append(f"* {name}: relation 4-way {100 * change:+.1f} points against {MAIN}.")
    lines.append(f"* The LM-from-scratch LLaVA reads relations at {mean[(rel, SCRATCH_VQA)]:.1%} by VQAScore and "
                 f"{mean[(rel, scratch)]:.1%} once converted with the same recipe and step cap.")  # fmt: skip
    unconverted = mean[(rel, PROJECTOR_CONVERTED)]
    lines.append(f"* Control: the projector-only LLaVA (no instruction training), converted with the same recipe, "
                 f"reads relations at {unconverted:.1%} against {mean[(rel, MAIN)]:.1%}: "
                 + ("the conversion builds on what instruction training taught the LM."
                    if mean[(rel, MAIN)] - unconverted >= RECIPE_TOLERANCE else
                    "the conversion recipe alone gets there without the instruction training."))  # fmt: skip
    return "\n".join(lines)


def conversion_full(config: FullScaleConfig, folder: Path, model: str = VLM2VEC_ENTRY) -> pd.DataFrame:
    """The paper's converted LLaVA (through the registry; a clear error when its weights are missing) scored with
    the same cosine code on every full-scale benchmark of ``config``; score logs under ``folder``."""
    return score_models(config, folder, [(model, "VLM2Vec conversion", model, config.dtype)])


def save_results(run: ConversionRun, scale: str, root: Path | None, total_seconds: float, tables: dict) -> Path:
    """Write ``metrics.csv`` and ``run.json`` under ``<root>/06_contrastive_conversion/<scale>[-smoke]``."""
    folders = {name: {seed: str(f) for seed, f in by_seed.items()} for name, by_seed in run.folders.items()}
    extra = {"total_wall_seconds": total_seconds, "wall_seconds": run.seconds, "folders": folders}
    return save_chapter_results("06_contrastive_conversion", scale, root, run.metrics, run.config, extra, tables)
