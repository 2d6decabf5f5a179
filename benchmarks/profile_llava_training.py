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

from analysis_lib.chapters import ch01_same_encoder as ch01
from analysis_lib.toy.pipeline import initial_llava, llava_features
from analysis_lib.toy.toy_setup import TrainingData
from analysis_lib.training.clip_llava import INSTRUCTION_MIX, Stage, train_llava

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
    data = TrainingData(setup, 0)
    model, processor = initial_llava(setup, 0, progress=False, data=data)
    features = llava_features(setup, 0, model, processor.image_processor, data)
    curriculum = (Stage("list", (("list", 1.0),), "cell words", 1.01, args.steps),
                  Stage("instructions", INSTRUCTION_MIX, "vqascore", 1.01, args.steps))  # fmt: skip
    cfg = dataclasses.replace(setup.llava_train, curriculum=curriculum)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    train_llava(model, processor.tokenizer, data.scenes, features, setup.prompt_format, cfg, 0, progress=False)
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
