"""Wall times of chapter 1 at toy scale: cold (empty cache, training included) and warm (cached models).

    .venv/bin/python benchmarks/chapter_times.py [--seeds 0] [--ablations]

Runs the chapter through papermill exactly as the book does, with a fresh cache folder, and prints
one table. Goals (2 CPU cores): cold <= 360 s per seed (LM pre-training, CLIP and LLaVA; the
ablation variants of "What makes the extraction possible" are excluded unless ``--ablations``),
warm <= 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from analysis_lib import book


def run_once(seeds: list[int], ablations: bool, scratch: Path, label: str) -> dict:
    """Execute chapter 1 once and return its wall time and per-stage times."""
    params = {"seeds": seeds, "ablations": ablations, "results_root": str(scratch / label),
              "figures_root": str(scratch / "figures")}  # fmt: skip
    start = time.perf_counter()
    book.execute_chapter(book.find_chapter("01"), params, scratch / f"{label}.ipynb")
    wall = time.perf_counter() - start
    run = json.loads((scratch / label / "01_same_encoder" / "toy" / "run.json").read_text())
    return {"label": label, "wall": wall, "stages": run["wall_seconds"]}


def main() -> None:
    """Time a cold and a warm run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--ablations", action="store_true", help="also train the chapter's LLaVA variants")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        os.environ["ANALYSIS_LIB_CACHE"] = str(scratch / "cache")
        rows = [run_once(args.seeds, args.ablations, scratch, label) for label in ("cold", "warm")]
    n = len(args.seeds)
    cores = os.cpu_count()
    print(f"chapter 01_same_encoder, toy scale, seeds {args.seeds}, ablations {args.ablations}, {cores} CPU cores")
    print(f"{'run':<6}{'wall s':>9}{'per seed s':>12}  stages (s, summed over seeds)")
    for row in rows:
        stages = {}
        for per_seed in row["stages"].values():
            for stage, secs in per_seed.items():
                stages[stage] = stages.get(stage, 0.0) + secs
        detail = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
        print(f"{row['label']:<6}{row['wall']:>9.1f}{row['wall'] / n:>12.1f}  {detail}")
    print(f"warm / cold wall-time ratio: {rows[1]['wall'] / rows[0]['wall']:.3f}")


if __name__ == "__main__":
    main()
