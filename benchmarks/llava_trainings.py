"""Toy LLaVA trainings, one row per recipe and seed: steps to cross each stage, seconds, passed or stalled.

    .venv/bin/python benchmarks/llava_trainings.py [--recipes book L4 ...] [--seeds 0 1 2 3 4] [--workers 2]

Each training runs in a worker process with one torch thread (through the model cache: CLIP and the
pre-trained LM are shared, a LLaVA already trained with the same recipe is read back: its row shows the seconds
its training took and "(cached)"). Seeds 0-4 are the development seeds, 5-9 held out; both are reported.
A training "passed" when its last stage's held-out check met its target; "stalled" when a stage ran to its cap.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time

from analysis_lib.models.tiny import LlavaSize
from analysis_lib.training.clip_llava import GROUNDED_CURRICULUM, LlavaTrainConfig, Stage
from analysis_lib.training.lm_pretraining import LmPretrainConfig

PREVIOUS_CURRICULUM = (
    GROUNDED_CURRICULUM[0],
    dataclasses.replace(GROUNDED_CURRICULUM[1], max_steps=3000),
    dataclasses.replace(GROUNDED_CURRICULUM[2], max_steps=1500),
    dataclasses.replace(GROUNDED_CURRICULUM[3], max_steps=4000),
)
INTERLEAVED_CURRICULUM = (
    GROUNDED_CURRICULUM[0],
    Stage("interleaved", (("list", 0.3), ("describe", 0.2), ("yes/no", 0.3), ("relative", 0.1), ("where", 0.1)),
          "vqascore", 0.95, 5500),
)  # fmt: skip
"""The grounding, describe and instruction tasks mixed from the first LM step, one check (the instruction stage's),
the three stages' caps summed."""
RECIPES: dict[str, dict] = {
    "book": {},
    "previous": {
        "llava_train": LlavaTrainConfig(
            curriculum=PREVIOUS_CURRICULUM, question_loss=True, yes_no_pairs=False, restarts=0
        )
    },
    "no-pairs": {"llava_train": LlavaTrainConfig(yes_no_pairs=False)},
    "question-loss": {"llava_train": LlavaTrainConfig(question_loss=True)},
    "no-restarts": {"llava_train": LlavaTrainConfig(restarts=0)},
    "b32": {"llava_train": LlavaTrainConfig(batch_size=32)},
    "L4": {"llava_size": LlavaSize(layers=4)},
    "quote": {"lm_pretrain": LmPretrainConfig(quote_steps=3000)},
    "interleaved": {"llava_train": LlavaTrainConfig(curriculum=INTERLEAVED_CURRICULUM)},
}
"""Candidate recipes: ``ToySetup`` fields that differ from the book's."""
DEVELOPMENT_SEEDS = (0, 1, 2, 3, 4)  # recipes are tuned on these only; seeds 5-9 are held out


def train_one(job: tuple[str, int]) -> dict:
    """Train (or load) one recipe's LLaVA for one seed in this worker; its row of the table."""
    import torch

    from analysis_lib.toy.pipeline import toy_models, training_log
    from analysis_lib.toy.toy_setup import ToySetup
    from analysis_lib.training.clip_llava import total_steps

    torch.set_num_threads(1)
    recipe, seed = job
    setup = ToySetup(**RECIPES[recipe])
    start = time.perf_counter()
    models = toy_models(setup, seed, progress=True)
    log = training_log(models.folders["llava"])
    stages = {s["stage"]: s["passed_at"] if s["passed_at"] is not None else f"cap {s['steps']}" for s in log["stages"]}
    abandoned = [stage for attempt in log.get("abandoned", []) for stage in attempt]
    return {
        "recipe": recipe,
        "seed": seed,
        "stages": stages,
        "restarts": log.get("restarts", 0),
        "abandoned_steps": sum(s["steps"] for s in abandoned),
        "steps": total_steps(log),
        "llava_s": round(log["train_seconds"], 1),
        "wall_s": round(time.perf_counter() - start, 1),
        "reused": models.reused["llava"],
        "passed": log["stages"][-1]["passed_at"] is not None,
        "final_check": log["stages"][-1]["checks"][-1] if log["stages"][-1]["checks"] else None,
    }


def main() -> None:
    """Run the trainings and print the table (rows also appended as JSON lines to ``--log``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["book"], choices=sorted(RECIPES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log", default=None, help="append each row as a JSON line to this file")
    args = parser.parse_args()
    jobs = [(r, s) for s in args.seeds for r in args.recipes]  # seed-major: recipes of one seed run side by side
    rows = []
    with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        for row in pool.imap_unordered(train_one, jobs):
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print(f"toy LLaVA trainings, {args.workers} worker(s) x 1 thread, {os.cpu_count()} CPU cores")
    print(f"{'recipe':<14}{'seed':>5}  {'last attempt: stages (step passed / cap)':<60}{'restarts':>9}{'steps':>7}"
          f"{'llava s':>9}  outcome")  # fmt: skip
    for row in sorted(rows, key=lambda r: (args.recipes.index(r["recipe"]), r["seed"])):
        stages = ", ".join(f"{k} {v}" for k, v in row["stages"].items())
        outcome = "passed" if row["passed"] else "stalled"
        reused = " (cached)" if row["reused"] else ""
        counts = f"{row['restarts']:>9}{row['steps']:>7}{row['llava_s']:>9.1f}"
        print(f"{row['recipe']:<14}{row['seed']:>5}  {stages:<60}{counts}  {outcome}{reused}")
    for recipe in args.recipes:
        mine = [r for r in rows if r["recipe"] == recipe]
        median = sorted(r["llava_s"] for r in mine)[len(mine) // 2]
        passed = ", ".join(f"{sum(r['passed'] for r in part)} of {len(part)} {name}"
                           for name, part in seed_groups(mine) if part)  # fmt: skip
        print(f"{recipe}: passed {passed}; median LLaVA training {median:.0f} s")


def seed_groups(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """Rows split into the seeds recipes were developed on and the held-out ones."""
    return [
        (f"development seeds ({DEVELOPMENT_SEEDS[0]}-{DEVELOPMENT_SEEDS[-1]})",
         [r for r in rows if r["seed"] in DEVELOPMENT_SEEDS]),
        ("held-out seeds", [r for r in rows if r["seed"] not in DEVELOPMENT_SEEDS]),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
