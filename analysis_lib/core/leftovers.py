"""Leftovers of processes that no longer run: temporary files and folders named with their process id.

Kept free of heavy imports, so that both the cache (temporary build folders) and the book runner (temporary
executed notebooks) can clear what a killed run left behind.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import psutil


def remove_dead(paths: Iterable[Path], pattern: re.Pattern[str]) -> None:
    """Delete each of ``paths`` whose name matches ``pattern`` and whose ``pid`` group names a process that no
    longer runs (another process may be removing it too: a vanished path is fine)."""
    for path in paths:
        match = pattern.match(path.name)
        if not match or psutil.pid_exists(int(match["pid"])):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
