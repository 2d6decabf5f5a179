"""Chapter-level experiments: each returns tidy metrics and timings that the notebook shows."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from analysis_lib.attribution import clip_margin_fn, patch_attribution, vqa_margin_fn
from analysis_lib.benchmarks import load_image, load_mmvp_vlm, load_whatsup_controlled
from analysis_lib.cache import cached_artifact
from analysis_lib.evaluation import mmvp_records, mmvp_scores, whatsup_option_scores, whatsup_records
from analysis_lib.features import llava_selected_features, pixel_tensor
from analysis_lib.metrics import opposite_option, seed_interval
from analysis_lib.models import toy_llava_from_clip
from analysis_lib.pipeline import ToyModels, ToySetup, toy_models, training_log
from analysis_lib.probing import chance_levels, encoder_probes
from analysis_lib.results import results_dir, write_results
from analysis_lib.scoring import ClipScorer, VQAScorer
from analysis_lib.toy_benchmarks import ATTRIBUTE_FILE, MMVP_FOLDER, RELATION_FILE, export_toy_benchmarks
from analysis_lib.toyworld import instruction_example, render_all, sample_scenes
from analysis_lib.training import ClipTrainConfig, LlavaTrainConfig, answer_accuracy, train_llava

EVAL_SEED = 12345
EVAL_PAIRS = 100
HEADLINE = {
    ("relations", "4-way individual"): "relation 4-way",
    ("relations", "4-way axis"): "relation axis (4-way choice on the right axis)",
    ("relations", "2-way individual"): "relation 2-way",
    ("relations", "2-way pair"): "relation 2-way pair",
    ("attributes", "4-way individual"): "attribute 4-way",
    ("pairs", "pair Spatial"): "MMVP-style spatial pairs",
    ("pairs", "pair Color"): "MMVP-style colour pairs",
}
AXIS = "relation axis (4-way choice on the right axis)"
CHANCE = {
    "relation 4-way": 0.25,
    "relation axis (4-way choice on the right axis)": 0.5,
    "relation 2-way": 0.5,
    "relation 2-way pair": 0.25,
    "attribute 4-way": 0.25,
    "MMVP-style spatial pairs": 0.25,
    "MMVP-style colour pairs": 0.25,
}


def toy_setup(clip_steps: int, caption_max_steps: int, instruction_steps: int, smoke: bool) -> ToySetup:
    """The chapter's toy setup; ``smoke`` shrinks everything to check the plumbing in seconds."""
    setup = ToySetup(
        clip_train=ClipTrainConfig(steps=clip_steps),
        llava_train=LlavaTrainConfig(caption_max_steps=caption_max_steps, instruction_steps=instruction_steps),
    )
    if not smoke:
        return setup
    return dataclasses.replace(
        setup,
        n_train_scenes=256,
        clip_train=ClipTrainConfig(steps=3, batch_size=32, warmup=1),
        llava_train=LlavaTrainConfig(
            projector_steps=2, caption_max_steps=2, instruction_steps=2, batch_size=16, warmup=1, validation_scenes=16
        ),
    )


@dataclass
class SameEncoderRun:
    """Everything chapter 1 shows: per-seed metrics, timings and the last seed's models."""

    metrics: pd.DataFrame
    seconds: dict[int, dict[str, float]]
    reused: dict[int, dict[str, bool]]
    caption_steps: dict[int, int]
    training_seconds: dict[int, dict[str, float | None]]
    benchmark_dir: Path
    models: ToyModels
    setup: ToySetup
    config: dict = field(default_factory=dict)


def model_scorers(models: ToyModels) -> dict[str, ClipScorer | VQAScorer]:
    """The chapter's two scorers on one seed's toy models."""
    return {
        "CLIP (cosine)": ClipScorer(models.clip, models.clip_processor),
        "LLaVA (VQAScore)": VQAScorer(models.llava, models.llava_processor, models.prompt_format),
    }


def score_all(scorers: dict[str, object], bench_dir: Path, seed: int) -> list[dict]:
    """Metric records of every scorer on the relation, attribute and pair sets."""
    relations = load_whatsup_controlled(bench_dir / RELATION_FILE)
    attributes = load_whatsup_controlled(bench_dir / ATTRIBUTE_FILE)
    pairs = load_mmvp_vlm(bench_dir / MMVP_FOLDER)
    records = []
    for model, scorer in scorers.items():
        rows = whatsup_records(relations, whatsup_option_scores(scorer, relations), "relations", seed)
        rows += whatsup_records(attributes, whatsup_option_scores(scorer, attributes), "attributes", seed, False)
        rows += mmvp_records(pairs, mmvp_scores(scorer, pairs), "pairs", seed)
        records += [{"model": model, "seed": seed, **row} for row in rows]
    return records


def same_encoder_experiment(
    seeds: list[int],
    device: str,
    clip_steps: int,
    caption_max_steps: int,
    instruction_steps: int,
    smoke: bool,
    progress: bool = True,
) -> SameEncoderRun:
    """Train or load toy CLIP and LLaVA per seed and score both on the three toy benchmarks."""
    setup = toy_setup(clip_steps, caption_max_steps, instruction_steps, smoke)
    bench_dir = export_toy_benchmarks(setup.world, 4 if smoke else EVAL_PAIRS, EVAL_SEED)
    records, seconds, reused, caption_steps, trained = [], {}, {}, {}, {}
    for seed in seeds:
        models = toy_models(setup, seed, device, progress)
        start = time.perf_counter()
        records += [
            {"condition": "patch tokens, frozen encoder", **r}
            for r in score_all(model_scorers(models), bench_dir, seed)
        ]
        seconds[seed] = {**models.seconds, "evaluation": time.perf_counter() - start}
        reused[seed] = models.reused
        llava_log = training_log(models.folders["llava"])
        caption_steps[seed] = llava_log["caption_steps"]
        trained[seed] = {
            "clip": training_log(models.folders["clip"]).get("train_seconds"),
            "llava": llava_log.get("train_seconds"),
        }
    config = {
        "parameters": {
            "seeds": seeds,
            "device": device,
            "clip_steps": clip_steps,
            "caption_max_steps": caption_max_steps,
            "instruction_steps": instruction_steps,
            "smoke": smoke,
        },
        "eval_seed": EVAL_SEED,
        "setup": dataclasses.asdict(setup),
    }
    return SameEncoderRun(
        pd.DataFrame(records), seconds, reused, caption_steps, trained, bench_dir, models, setup, config
    )


def headline(metrics: pd.DataFrame) -> pd.DataFrame:
    """The chapter's headline metrics, one row per seed, with readable test names."""
    keys = list(zip(metrics["benchmark"], metrics["metric"]))
    rows = metrics[[k in HEADLINE for k in keys]].copy()
    rows["test"] = [HEADLINE[k] for k in zip(rows["benchmark"], rows["metric"])]
    order = {name: i for i, name in enumerate(HEADLINE.values())}
    return rows.sort_values(by="test", key=lambda s: s.map(order), kind="stable")


def seed_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean across seeds with its 95% t-interval and the per-seed values, per test and model."""
    out = []
    for (test, model), group in rows.groupby(["test", "model"], sort=False):
        mean, low, high = seed_interval(group["value"])
        low, high = max(0.0, low), min(1.0, high)  # accuracies: clip the t-interval to [0, 1]
        per_seed = ", ".join(f"{v:.1%}" for v in group.sort_values("seed")["value"])
        out.append(
            {
                "test": test,
                "model": model,
                "mean": mean,
                "ci95_low": low,
                "ci95_high": high,
                "per seed": per_seed,
                "chance": CHANCE.get(test),
            }
        )
    return pd.DataFrame(out)


def target_checks(summary: pd.DataFrame) -> pd.DataFrame:
    """The chapter's pre-registered targets, each marked met or not from the seed means."""
    mean = {(row.test, row.model): row.mean for row in summary.itertuples()}
    clip, llava = "CLIP (cosine)", "LLaVA (VQAScore)"
    checks = [
        ("CLIP relation 4-way <= 35%", mean[("relation 4-way", clip)], mean[("relation 4-way", clip)] <= 0.35),
        ("CLIP attribute 4-way >= 90%", mean[("attribute 4-way", clip)], mean[("attribute 4-way", clip)] >= 0.90),
        ("LLaVA relation 4-way >= 80%", mean[("relation 4-way", llava)], mean[("relation 4-way", llava)] >= 0.80),
    ]
    for test in ("relation 2-way pair", "MMVP-style spatial pairs"):
        gap = mean[(test, llava)] - mean[(test, clip)]
        checks.append((f"LLaVA {test} above CLIP's (gap shown)", gap, gap > 0))
    return pd.DataFrame(checks, columns=["target", "value", "met"])


def findings(summary: pd.DataFrame, caption_steps: dict[int, int]) -> str:
    """The chapter's reading of its own numbers, as Markdown written from the summary table."""
    row = {(r.test, r.model): r for r in summary.itertuples()}
    clip, llava = "CLIP (cosine)", "LLaVA (VQAScore)"

    def show(test: str, model: str) -> str:
        r = row[(test, model)]
        return f"{r.mean:.1%} (95% CI {r.ci95_low:.1%}-{r.ci95_high:.1%})"

    lines = [
        f"* CLIP: attributes {show('attribute 4-way', clip)}, relations 4-way {show('relation 4-way', clip)} "
        f"(chance 25%), 2-way {show('relation 2-way', clip)} (chance 50%).",
        f"* LLaVA on the same frozen encoder: relations 4-way {show('relation 4-way', llava)}, "
        f"2-way {show('relation 2-way', llava)}; attributes {show('attribute 4-way', llava)}.",
        f"* Axis vs direction: the 4-way choice is on the right axis (horizontal vs vertical) for CLIP "
        f"{show(AXIS, clip)} and LLaVA {show(AXIS, llava)} (chance 50%); 2-way accuracy (left vs right, "
        "above vs below, same axis) isolates the direction.",
        f"* Pairs (chance 25%): What'sUp-style 2-way pairs CLIP {show('relation 2-way pair', clip)} vs LLaVA "
        f"{show('relation 2-way pair', llava)}; MMVP-style spatial pairs CLIP "
        f"{show('MMVP-style spatial pairs', clip)} vs LLaVA {show('MMVP-style spatial pairs', llava)}.",
        f"* LLaVA's captioning phase ran {', '.join(f'{s} steps (seed {k})' for k, s in caption_steps.items())} "
        "before the instruction mix.",
    ]
    return "\n".join(lines)


def fresh_scenes(run: SameEncoderRun, n_scenes: int, seed: int) -> tuple[list, torch.Tensor]:
    """``n_scenes`` new scenes (``seed``) and their pixels, preprocessed for the run's CLIP."""
    scenes = sample_scenes(n_scenes, run.setup.world, seed=seed)
    return scenes, pixel_tensor(
        render_all(scenes, run.setup.world, seed + 1), run.models.clip_processor.image_processor
    )


def encoder_probe_table(run: SameEncoderRun, n_scenes: int) -> pd.DataFrame:
    """Linear-probe accuracies on the last seed's frozen CLIP, beside each probe's majority-class rate."""
    scenes, pixels = fresh_scenes(run, n_scenes, EVAL_SEED + 1)
    return pd.DataFrame(
        {
            "probe accuracy": encoder_probes(run.models.clip, pixels, scenes),
            "majority class": chance_levels(scenes, run.setup.world.grid),
        }
    )


def per_relation_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """4-way relation accuracy per relation and model, averaged over seeds."""
    rows = metrics[
        (metrics.benchmark == "relations") & metrics.metric.str.match(r"4-way (left_of|right_of|above|below)")
    ]
    return rows.pivot_table(index="metric", columns="model", values="value", aggfunc="mean")


def attribution_example(run: SameEncoderRun) -> tuple[Image.Image, dict[str, np.ndarray], str]:
    """Patch attributions of both scorers' margins (true caption minus opposite-relation caption)
    on the first relation-set image, with the last seed's models."""
    item = load_whatsup_controlled(run.benchmark_dir / RELATION_FILE)[0]
    gold = item.caption_options[0]
    foil = item.caption_options[opposite_option(item.caption_options, item.relation)]
    clip_scorer, vqa_scorer = model_scorers(run.models).values()
    image = load_image(item.image_path)
    pixels = vqa_scorer.pixel_values([image])
    patch = run.models.clip.config.vision_config.patch_size
    maps = {
        "CLIP: cos(true) - cos(foil)": patch_attribution(clip_margin_fn(clip_scorer, gold, foil), pixels, patch),
        "LLaVA: VQAScore(true) - VQAScore(foil)": patch_attribution(
            vqa_margin_fn(vqa_scorer, gold, foil), pixels, patch
        ),
    }
    return image, maps, f'true: "{gold}"   foil: "{foil}"   (seed {run.config["parameters"]["seeds"][-1]})'


def probe_example(run: SameEncoderRun) -> tuple[list[Image.Image], tuple[str, str]]:
    """The first MMVP-style spatial pair of the toy test set: its two images and two statements."""
    pair = next(p for p in load_mmvp_vlm(run.benchmark_dir / MMVP_FOLDER) if p.pattern == "Spatial")
    return [load_image(path) for path in pair.image_paths], pair.statements


BINDING_STEPS = 500
KNOWS_WHERE_NOT_WHICH = 0.5  # the two objects share a row or a column: the wrong one's cell gets one word wrong
WHERE_IMAGE = "where is X? - answer only in the image (the chapter's trained LLaVA)"
WHERE_TEXT = "where is X? - both cells written in the question (fresh toy LM, text only)"


def _where_conversations(scenes: list, task: str, seed: int) -> list[list[tuple[str, str]]]:
    """One 'where' question per scene."""
    rng = np.random.default_rng(seed)
    return [[instruction_example(scene, rng, {task: 1.0})] for scene in scenes]


def binding_steps(setup: ToySetup) -> int:
    """Training steps of the text-only control: ``BINDING_STEPS``, fewer in a smoke run."""
    return min(BINDING_STEPS, setup.llava_train.caption_max_steps)


def text_binding_accuracy(run: SameEncoderRun, seed: int, scenes: list) -> dict:
    """Train a fresh toy LM (the chapter's size and optimiser) on the text-only binding control, cached."""
    setup, steps = run.setup, binding_steps(run.setup)
    spec = {"llava": setup.llava_spec(seed), "steps": steps, "task": "where-in-text", "eval_scenes": len(scenes),
            "eval_seed": EVAL_SEED}  # fmt: skip

    def build(folder: Path) -> None:
        model, processor = toy_llava_from_clip(run.models.clip, run.models.clip_processor, setup.llava_size, seed)
        train_scenes = sample_scenes(setup.n_train_scenes, setup.world, seed)
        blank = torch.zeros(len(train_scenes), model.config.image_seq_length, model.config.vision_config.hidden_size)
        cfg = dataclasses.replace(
            setup.llava_train, projector_steps=1, caption_max_steps=steps, instruction_steps=0,
            caption_target=float("inf"), validation_scenes=64,
        )  # fmt: skip
        start = time.perf_counter()
        log = train_llava(model, processor.tokenizer, train_scenes, blank, setup.prompt_format, cfg, seed, False,
                          caption_tasks={"where-in-text": 1.0})  # fmt: skip
        conversations = _where_conversations(scenes, "where-in-text", EVAL_SEED + 4)
        accuracy = answer_accuracy(model, processor.tokenizer, setup.prompt_format, conversations, blank[: len(scenes)])
        record = {"accuracy": accuracy, "final_loss": float(np.mean(log["curves"]["projector+LM"][-50:]))}
        (folder / "binding.json").write_text(json.dumps({**record, "train_seconds": time.perf_counter() - start}))

    folder, _ = cached_artifact("binding-control", spec, build)
    return json.loads((folder / "binding.json").read_text())


def binding_control(run: SameEncoderRun, n_scenes: int = 512) -> pd.DataFrame:
    """Is the toy LLaVA's failure the encoder's or the language model's? 'Where is X?' answered from the
    image by the last seed's LLaVA, and learned from text alone by a fresh LM of the same size."""
    seed = run.config["parameters"]["seeds"][-1]
    scenes, pixels = fresh_scenes(run, n_scenes, EVAL_SEED + 3)
    llava, tokenizer = run.models.llava, run.models.llava_processor.tokenizer
    conversations = _where_conversations(scenes, "where", EVAL_SEED + 4)
    from_image = answer_accuracy(
        llava, tokenizer, run.models.prompt_format, conversations, llava_selected_features(llava, pixels)
    )
    from_text = text_binding_accuracy(run, seed, scenes)["accuracy"]
    return pd.DataFrame(
        {
            "test": [WHERE_IMAGE, WHERE_TEXT],
            "answer accuracy": [from_image, from_text],
            "training steps": [
                run.caption_steps[seed] + run.setup.llava_train.instruction_steps,
                binding_steps(run.setup),
            ],
            "knows where both objects are, not which": [KNOWS_WHERE_NOT_WHICH] * 2,
        }
    )


def save_results(
    run: SameEncoderRun, scale: str, root: Path | None, total_seconds: float, tables: dict[str, pd.DataFrame]
) -> Path:
    """Write the run's ``metrics.csv`` and ``run.json`` (with ``tables``, e.g. the binding control, as
    records) under ``<root>/01_same_encoder/<scale>[-smoke]``."""
    smoke = run.config["parameters"]["smoke"]
    folder = results_dir("01_same_encoder", scale + ("-smoke" if smoke else ""), root)
    by_seed = {
        "wall_seconds": run.seconds,
        "training_wall_seconds": run.training_seconds,
        "cache_reused": run.reused,
        "caption_steps": run.caption_steps,
    }
    record = {"chapter": "01_same_encoder", "scale": scale, **run.config, "total_wall_seconds": total_seconds}
    record |= {name: {str(seed): v for seed, v in values.items()} for name, values in by_seed.items()}
    record |= {name: table.to_dict("records") for name, table in tables.items()}
    write_results(folder, run.metrics, record)
    return folder
