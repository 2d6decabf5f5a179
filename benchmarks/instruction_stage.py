"""The instruction stage alone, several recipes from one checkpoint: which change makes the yes/no stage cross.

    .venv/bin/python benchmarks/instruction_stage.py --seed 8 --variants book no-pairs question-loss [--cap 1500]

The seed's toy LLaVA is trained through the book's projector, list and describe stages once (saved under
``$TMPDIR``); then each variant runs the instruction stage from that same checkpoint with the same batches' seed,
so the variants differ only in the recipe. Prints one row per variant: the VQAScore check every 100 steps and the
step it passed (or "cap"). Run variants side by side with ``--workers``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import tempfile
import time

VARIANTS = {
    "book": {},
    "no-pairs": {"yes_no_pairs": False},
    "question-loss": {"question_loss": True},
    "previous": {"yes_no_pairs": False, "question_loss": True},
}
"""``LlavaTrainConfig`` fields that differ from the book's in the instruction stage."""


def checkpoint(seed: int) -> str:
    """Path of the seed's model after the book's first three stages (trained once, then reused)."""
    return os.path.join(tempfile.gettempdir(), f"toy-llava-describe-stage-{seed}.pt")


def run_variant(job: tuple[int, str, int]) -> dict:
    """Train the instruction stage of ``variant`` from the seed's checkpoint; its row."""
    import numpy as np
    import torch

    from analysis_lib.toy.pipeline import initial_llava, llava_features
    from analysis_lib.toy.toy_setup import ToySetup, TrainingData
    from analysis_lib.training.clip_llava import curriculum_attempt

    torch.set_num_threads(1)
    seed, variant, cap = job
    setup = ToySetup()
    data = TrainingData(setup, seed)
    model, processor = initial_llava(setup, seed, data=data)
    features = llava_features(setup, seed, model, processor.image_processor, data)
    n_train = len(data.scenes) - setup.llava_train.validation_scenes
    mean, std = features[:n_train].mean(dim=(0, 1)), features[:n_train].std(dim=(0, 1)) + 1e-6
    standardised = (features - mean) / std
    book = setup.llava_train
    if not os.path.exists(checkpoint(seed)):
        first = dataclasses.replace(book, curriculum=book.curriculum[:-1])
        curriculum_attempt(model, processor.tokenizer, data.scenes, standardised, setup.prompt_format, first, seed,
                           False, False)  # fmt: skip
        torch.save(model.state_dict(), checkpoint(seed) + f".{os.getpid()}")
        os.replace(checkpoint(seed) + f".{os.getpid()}", checkpoint(seed))
    model.load_state_dict(torch.load(checkpoint(seed), weights_only=True))
    stage = dataclasses.replace(book.curriculum[-1], max_steps=cap)
    cfg = dataclasses.replace(book, curriculum=(stage,), **VARIANTS[variant])
    start = time.perf_counter()
    (log,) = curriculum_attempt(model, processor.tokenizer, data.scenes, standardised, setup.prompt_format, cfg,
                                seed + 7, False, False)  # fmt: skip
    checks = [(c["step"], round(float(np.round(c["value"], 2)), 2)) for c in log["checks"]]
    return {"seed": seed, "variant": variant, "passed_at": log["passed_at"], "checks": checks,
            "seconds": round(time.perf_counter() - start)}  # fmt: skip


def main() -> None:
    """Run the variants (the checkpoint first, once) and print their rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=sorted(VARIANTS))
    parser.add_argument("--cap", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(args.seed, v, args.cap) for v in args.variants]
    context = mp.get_context("spawn")
    with context.Pool(1) as pool:  # the checkpoint, once, before the variants share it
        rows = [pool.apply(run_variant, (jobs[0],))]
    with context.Pool(args.workers, maxtasksperchild=1) as pool:
        rows += pool.map(run_variant, jobs[1:])
    print(f"instruction stage from one checkpoint, seed {args.seed}, cap {args.cap}")
    for row in rows:
        outcome = f"passed at {row['passed_at']}" if row["passed_at"] is not None else "ran to its cap"
        print(f"{row['variant']:<15} {outcome:<16} checks {json.dumps(row['checks'])}")


if __name__ == "__main__":
    main()
