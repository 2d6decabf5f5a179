"""Statistics over training seeds that stay valid when a seed's outcome is bimodal (a toy LLaVA crosses or stalls).

A mean over seeds comes with a percentile bootstrap 95% interval over the seeds (seeded, so reproducible): it
assumes nothing about the shape of the per-seed outcomes, and as a percentile of resampled means it lies within the
seeds' own range, so it never needs clipping to a feasible range. Beside it, how many seeds show a thing, "k of n",
with the exact (Clopper-Pearson) 95% interval of the share of seeds that would. Both are valid from
``MIN_SEEDS`` seeds on; with fewer, a bootstrap over seeds spans little more than their range and the exact
interval is wide.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from analysis_lib.stats.metrics import bootstrap_ci

MARGIN = 0.10
"""The smallest difference in accuracy (10 points) that counts: a seed shows an effect when its paired difference
clears it, and an accuracy counts as above chance when it is this far above."""
MIN_SEEDS = 5
"""The fewest seeds for which the intervals below are read as 95% intervals."""
BOOTSTRAP_SEED, BOOTSTRAP_RESAMPLES = 0, 10_000
INTERVAL = "percentile bootstrap 95% CI over seeds"
SHARE_INTERVAL = "exact (Clopper-Pearson) 95% CI of the share of seeds"


def seed_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean across seeds and its percentile bootstrap 95% interval over seeds (``INTERVAL``; never clipped)."""
    values = np.asarray(values, dtype=float)
    low, high = bootstrap_ci(values, seed=BOOTSTRAP_SEED, n_resamples=BOOTSTRAP_RESAMPLES)
    return float(values.mean()), low, high


def share_interval(k: int, n: int) -> tuple[float, float]:
    """The exact (Clopper-Pearson) 95% interval of the share of seeds showing a thing, from ``k`` of ``n``."""
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def k_of_n(k: int, n: int) -> str:
    """A count of seeds as text: ``3 of 5``."""
    return f"{k} of {n}"


def interval_caveat(n: int) -> str:
    """Empty from ``MIN_SEEDS`` seeds on; else a note that the intervals over ``n`` seeds are of limited validity."""
    if n >= MIN_SEEDS:
        return ""
    return f"{n} seed{'s' if n != 1 else ''} only: below {MIN_SEEDS} the intervals over seeds are of limited validity"


def seeds_above(values: Sequence[float], level: float) -> int:
    """How many seeds' values are at least ``level``."""
    return int((np.asarray(values, dtype=float) >= level).sum())
