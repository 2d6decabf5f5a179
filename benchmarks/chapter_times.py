"""Wall times of the toy chapters: cold (empty cache, training included) and warm (cached models).

    .venv/bin/python benchmarks/chapter_times.py [--chapters 01 02 03] [--seeds 0] [--ablations] [--warm-only]

Runs each chapter through papermill exactly as the book does, in book order and with one fresh cache
folder, so a later chapter's cold time is what it adds to the chapters before it (chapter 1's CLIP
and pre-trained LM are shared). Prints one table. ``--warm-only`` uses the repository's cache as it
is: a first run with the models cached ("models": it scores afresh when the library changed since the
scores were cached) and a second with models and scores cached ("warm"). Goals (2 CPU cores): the
whole book cold <= 45 min with 3 seeds, any chapter warm <= 30 s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from analysis_lib.book import runner as book


def run_once(chapter: str, seeds: list[int], ablations: bool, scratch: Path, label: str) -> float:
    """Execute one chapter once with the given seeds and return its wall time."""
    path = book.find_chapter(chapter)
    params = {"seeds": seeds, "results_root": str(scratch / label), "figures_root": str(scratch / "figures")}
    if "ablations" in book.declared_parameters(book.read_chapter(path)):
        params["ablations"] = ablations
    start = time.perf_counter()
    book.execute_chapter(path, params, scratch / f"{path.stem}-{label}.ipynb")
    return time.perf_counter() - start


def main() -> None:
    """Time cold and warm runs of each chapter and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="+", default=[p.stem[:2] for p in book.run_order(book.chapters())])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ablations", action="store_true", help="also train chapter 1's LLaVA variants")
    parser.add_argument("--warm-only", action="store_true", help="time warm runs on the repository's cache")
    args = parser.parse_args()
    labels = ("models", "warm") if args.warm_only else ("cold", "warm")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if not args.warm_only:
            os.environ["ANALYSIS_LIB_CACHE"] = str(scratch / "cache")
        for label in labels:
            for chapter in args.chapters:
                rows.append((chapter, label, run_once(chapter, args.seeds, args.ablations, scratch, label)))
    n = len(args.seeds)
    print(f"toy scale, seeds {args.seeds}, chapter 1 ablations {args.ablations}, {os.cpu_count()} CPU cores")
    print(f"{'chapter':<9}{'run':<6}{'wall s':>9}{'per seed s':>12}")
    for chapter, label, wall in rows:
        print(f"{chapter:<9}{label:<6}{wall:>9.1f}{wall / n:>12.1f}")
    walls = {(c, label): w for c, label, w in rows}
    for chapter in args.chapters:
        ratio = walls[(chapter, "warm")] / walls[(chapter, labels[0])]
        print(f"chapter {chapter} warm / {labels[0]} wall-time ratio: {ratio:.3f}")
    for label in labels:
        print(f"whole book ({', '.join(args.chapters)}) {label}: {sum(w for _, lab, w in rows if lab == label):.1f} s")


if __name__ == "__main__":
    main()
