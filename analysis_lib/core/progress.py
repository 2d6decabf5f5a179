"""Progress for the console, kept out of executed notebooks.

Inside a notebook kernel even the process's own stderr is captured into the notebook, so the book runner
gives the kernel a file (``$ANALYSIS_LIB_PROGRESS_FILE``) and relays what is written there to its own console
(``book.relayed_progress``); anywhere else progress goes to the process's stderr.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from functools import cache
from typing import TextIO

from tqdm import tqdm

PROGRESS_ENV = "ANALYSIS_LIB_PROGRESS_FILE"


@cache
def _progress_file(path: str) -> TextIO:
    """The runner's progress file, opened once per process for appending, line-buffered."""
    return open(path, "a", buffering=1)  # kept open for the process's life


def console() -> TextIO:
    """Where progress goes: the book runner's progress file when one is set, else this process's stderr."""
    path = os.environ.get(PROGRESS_ENV)
    return _progress_file(path) if path else sys.__stderr__


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar on the console (see the module docstring), never in a chapter's output."""
    return tqdm(iterable, file=console(), **kwargs)


def seed_progress(seeds: Iterable[int], chapter: str) -> Iterator[int]:
    """The seeds, one at a time, with one console line per seed when its work is done (``make book``'s
    progress: chapter, seed, how many of how many, seconds)."""
    seeds = list(seeds)
    for i, seed in enumerate(seeds, 1):
        start = time.perf_counter()
        yield seed
        print(f"  {chapter}: seed {seed} done ({i}/{len(seeds)}, {time.perf_counter() - start:.0f} s)",
              file=console(), flush=True)  # fmt: skip
