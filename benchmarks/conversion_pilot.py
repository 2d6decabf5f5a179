"""Chapter 6's pilot, repeated on seeds the chapter does not report: its recipe against the choices it rejected.

    .venv/bin/python benchmarks/conversion_pilot.py [--seeds 5] [--workers 2]

The recipe's learning rate and relation-group batches were chosen on seed 0, a reported seed. This converts chapter
1's LLaVA of each seed (trained first when not cached, one torch thread per worker) with ``ch06.PILOT``'s recipes,
through the model cache (chapter 6's own run with ``pilot_seeds`` reads the same models), and prints each run's
held-out checks, how it ended, and whether the chapter's choice replicates by the rule the chapter states.
"""

from __future__ import annotations

import argparse
import os

import pandas as pd
import torch

from analysis_lib.chapters import ch06_contrastive_conversion as ch06

CLIP_STEPS = 300  # the book's toy CLIP (every chapter's ``clip_steps`` parameter)


def main() -> None:
    """Run the pilot on ``--seeds`` and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[5])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    checks = ch06.pilot_checks(args.seeds, "cpu", CLIP_STEPS, smoke=False, progress=True, workers=args.workers)
    print(f"chapter 6's pilot on seeds {args.seeds}, {os.cpu_count()} CPU cores, one torch thread")
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 60):
        print(checks.pivot_table(index="step", columns=["seed", "recipe"], values="relation 4-way").round(3))
        print(ch06.pilot_table(checks).round(3).to_string(index=False))
    print(ch06.pilot_reading(checks))


if __name__ == "__main__":
    main()
