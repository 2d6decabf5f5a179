"""Progress bars for the console, kept out of executed notebooks."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar written to the process's own stderr: the terminal that runs a script or ``make book``
    (inside a notebook kernel, the kernel's console rather than the cell's output), so that executed
    chapters hold results, not bookkeeping."""
    return tqdm(iterable, file=sys.__stderr__, **kwargs)
