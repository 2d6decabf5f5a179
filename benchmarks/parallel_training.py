"""Wall time of several toy LLaVA trainings three ways: one process with 2 torch threads, one process with 1, and
2 worker processes of 1 thread each (``pipeline.train_toy_models``).

    .venv/bin/python benchmarks/parallel_training.py [--trainings 4] [--cap 150] [--smoke]

The trainings are chapter 1's LLaVA on seeds 0 .. N-1, each curriculum stage capped at ``--cap`` steps. Their CLIPs,
pre-trained LMs and features come from the model cache (trained there first where missing, not timed): each way
starts from a fresh cache that holds links to them, so it times the LLaVA trainings alone. Run it on an otherwise
idle machine. ``--smoke``: chapter 1's smoke setup (seconds; it shows the script works, its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from analysis_lib.chapters import ch01_same_encoder as ch01
from analysis_lib.core.cache import CACHE_ENV, cache_root, entry_folder
from analysis_lib.toy import pipeline
from analysis_lib.toy.toy_setup import ToySetup

WAYS = {  # name -> (torch threads, worker processes)
    "one process, 2 torch threads": (2, 1),
    "one process, 1 torch thread": (1, 1),
    "2 worker processes, 1 thread each": (1, 2),
}
BASELINE = "one process, 1 torch thread"
PREREQUISITES = ("clip", "toy-lm", "features")


def capped_setup(cap: int, smoke: bool) -> ToySetup:
    """Chapter 1's setup with every curriculum stage capped at ``cap`` steps."""
    setup = ch01.toy_setup(300, smoke)
    stages = tuple(dataclasses.replace(s, max_steps=min(s.max_steps, cap)) for s in setup.llava_train.curriculum)
    return dataclasses.replace(setup, llava_train=dataclasses.replace(setup.llava_train, curriculum=stages))


def link_prerequisites(jobs: list[tuple[ToySetup, int]], source: Path, target: Path) -> None:
    """Hard-link the cached CLIPs, LMs and features of ``jobs`` from the cache at ``source`` into that at ``target``."""
    for setup, seed in jobs:
        for kind in PREREQUISITES:
            spec = pipeline.Build(kind, setup, seed).spec()
            if spec is not None and not entry_folder(kind, spec, target).exists():
                shutil.copytree(
                    entry_folder(kind, spec, source), entry_folder(kind, spec, target), copy_function=os.link
                )


def llava_steps(jobs: list[tuple[ToySetup, int]]) -> int:
    """Training steps of every job's cached LLaVA, all stages."""
    logs = [pipeline.training_log(entry_folder("llava", setup.llava_spec(seed))) for setup, seed in jobs]
    return sum(stage["steps"] for log in logs for stage in log["stages"])


def timed_way(jobs: list[tuple[ToySetup, int]], threads: int, workers: int, source: Path) -> tuple[float, int]:
    """Train ``jobs``' LLaVAs into a fresh cache (prerequisites linked from ``source``): wall seconds and steps."""
    with tempfile.TemporaryDirectory(prefix=".parallel-training-", dir=source) as root:
        link_prerequisites(jobs, source, Path(root))
        os.environ[CACHE_ENV] = root  # the workers inherit it
        torch.set_num_threads(threads)
        start = time.perf_counter()
        pipeline.train_toy_models(jobs, workers, progress=False)
        seconds = time.perf_counter() - start
        steps = llava_steps(jobs)
    os.environ[CACHE_ENV] = str(source)
    return seconds, steps


def main() -> None:
    """Build the prerequisites, time the trainings each way and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainings", type=int, default=4, help="LLaVA trainings (seeds 0 .. N-1)")
    parser.add_argument("--cap", type=int, default=150, help="steps at most per curriculum stage")
    parser.add_argument("--smoke", action="store_true", help="chapter 1's smoke setup: a check that the script runs")
    args = parser.parse_args()
    source = cache_root()
    jobs = pipeline.seed_jobs([capped_setup(args.cap, args.smoke)], list(range(args.trainings)))
    pipeline.run_phases(pipeline.missing_builds(jobs)[:-1], workers=2)  # CLIPs, LMs, features: not timed
    rows = {name: timed_way(jobs, threads, workers, source) for name, (threads, workers) in WAYS.items()}
    print(f"{args.trainings} toy LLaVA trainings, stages capped at {args.cap} steps, {os.cpu_count()} CPU cores"
          + (" (smoke setup: numbers meaningless)" if args.smoke else ""))  # fmt: skip
    print(f"{'way':<36}{'wall s':>9}{'speed-up vs ' + BASELINE:>40}{'LLaVA steps':>13}")
    for name, (seconds, steps) in rows.items():
        print(f"{name:<36}{seconds:>9.1f}{rows[BASELINE][0] / seconds:>39.2f}x{steps:>13}")


if __name__ == "__main__":
    main()
