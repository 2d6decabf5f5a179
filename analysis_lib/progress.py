"""Progress bars for the console, kept out of executed notebooks."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar written to the process's own stderr: the terminal that runs a script or ``make book``
    (inside a notebook kernel, the kernel's console rather than the cell's output), so that executed
    chapters hold results, not bookkeeping."""
    return tqdm(iterable, file=sys.__stderr__, **kwargs)


def seed_progress(seeds: Iterable[int], chapter: str) -> Iterator[int]:
    """The seeds, one at a time, with one console line per seed when its work is done (``make book``'s
    progress: chapter, seed, how many of how many, seconds)."""
    seeds = list(seeds)
    for i, seed in enumerate(seeds, 1):
        start = time.perf_counter()
        yield seed
        print(f"  {chapter}: seed {seed} done ({i}/{len(seeds)}, {time.perf_counter() - start:.0f} s)",
              file=sys.__stderr__, flush=True)  # fmt: skip
