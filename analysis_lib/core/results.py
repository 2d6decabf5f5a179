"""Tidy result files: ``results/<chapter>/<scale>/metrics.csv`` and ``run.json``, written atomically."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd

from analysis_lib.core.cache import take_used, use_record

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "analysis_lib",
    "torch",
    "transformers",
    "tokenizers",
    "numpy",
    "scipy",
    "pandas",
    "captum",
    "open_clip_torch",
    "accelerate",
)
METRIC_COLUMNS = ["model", "condition", "benchmark", "metric", "seed", "value", "ci_low", "ci_high", "n_units"]


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that determine the numbers."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """The repository's HEAD commit, or ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def results_dir(chapter: str, scale: str, root: Path | None = None) -> Path:
    """``<root>/<chapter>/<scale>``, ``root`` defaulting to the repository's ``results``."""
    return Path(root or REPO_ROOT / "results") / chapter / scale


def write_results(folder: Path, metrics: pd.DataFrame, run: dict) -> None:
    """Write ``metrics.csv`` (tidy, one row per model/condition/benchmark/metric/seed) and ``run.json`` (``run``, the
    versions, the commit, and the cache entries this process used since its last ``run.json``: ``use_record``)."""
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics table lacks columns {missing}")
    atomic_write(folder / "metrics.csv", metrics[METRIC_COLUMNS].to_csv(index=False, float_format="%.6g"))
    record = {**run, "cache": use_record(take_used()), "versions": package_versions(), "git_commit": git_commit()}
    atomic_write(folder / "run.json", json.dumps(record, indent=2, sort_keys=True, default=str))
