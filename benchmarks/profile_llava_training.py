"""Where one toy LLaVA training spends its time: cProfile over a short curriculum (a list stage and an
instruction stage, 200 steps each, checks every 100 steps as in the book) on chapter 1's seed-0 models.

.venv/bin/python benchmarks/profile_llava_training.py [--steps 200] [--threads 1]

Prints the share of wall time of the training steps (split into building the batch, forward and backward),
the held-out checks, and the top functions by own time. Run it on an idle machine for absolute numbers; the
shares are what decide where optimising can pay.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import pstats
import time

import torch
from transformers import LlamaForCausalLM

from analysis_lib.chapters import ch01_same_encoder as ch01
from analysis_lib.features import cached_features, llava_selected_features
from analysis_lib.models import load_language_model, toy_llava_from_clip
from analysis_lib.pipeline import _TrainingData, toy_models
from analysis_lib.training import INSTRUCTION_MIX, Stage, train_llava

PARTS = {  # function name in the profile -> what it is
    "train_step": "training steps (all)",
    "conversation_batch": "  building batches: tokenizing",
    "instruction_example": "  building batches: sampling conversations",
    "run_backward": "  backward pass",
    "held_out_check": "held-out checks",
}


def cumulative(stats: pstats.Stats, name: str) -> float:
    """Cumulative seconds of every profiled function called ``name``."""
    return sum(row[3] for (_, _, func), row in stats.stats.items() if func == name or f"'{name}' of" in func)


def main() -> None:
    """Profile a short curriculum and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps per stage")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup = ch01.toy_setup(300, False)
    models = toy_models(setup, 0, progress=False)
    model, processor = toy_llava_from_clip(models.clip, models.clip_processor, setup.llava_size, 0)
    load_language_model(model, LlamaForCausalLM.from_pretrained(models.folders["lm"]))
    data = _TrainingData(setup, 0)
    spec = setup.feature_spec(0, model.config.vision_feature_layer)
    pixels = data.get(models.clip_processor.image_processor)[1]
    features = cached_features(spec, lambda: llava_selected_features(model, pixels))
    scenes, _ = data.get(models.clip_processor.image_processor)
    curriculum = (Stage("list", (("list", 1.0),), "cell words", 1.01, args.steps),
                  Stage("instructions", INSTRUCTION_MIX, "vqascore", 1.01, args.steps))  # fmt: skip
    cfg = dataclasses.replace(setup.llava_train, curriculum=curriculum)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    train_llava(model, processor.tokenizer, scenes, features, setup.prompt_format, cfg, 0, progress=False)
    profile.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profile)
    steps = 2 * args.steps
    print(f"{steps} training steps + checks every {cfg.check_every}: {total:.1f} s wall, {args.threads} thread(s)")
    print(f"{'part':<45}{'seconds':>9}{'share':>8}{'ms/step':>9}")
    seconds = {label: cumulative(stats, name) for name, label in PARTS.items()}
    step_parts = [label for label in seconds if label.startswith("  ")]
    rest = seconds[PARTS["train_step"]] - sum(seconds[label] for label in step_parts)
    seconds = {**{k: v for k, v in seconds.items() if k != PARTS["held_out_check"]},
               "  forward pass, loss and optimiser (the rest)": rest,
               PARTS["held_out_check"]: seconds[PARTS["held_out_check"]]}  # fmt: skip
    for label, value in seconds.items():
        print(f"{label:<45}{value:>9.1f}{value / total:>8.1%}{1000 * value / steps:>9.1f}")
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(12)
    print(text.getvalue().split("\n", 6)[-1])


if __name__ == "__main__":
    main()
