"""The verdict on a claim measured as a paired effect A - B over seeds, by one stated rule (``RULE``).

The rule counts the seeds that show the effect (k of n) rather than reading a mean's interval, because a toy LLaVA's
outcome per seed is bimodal (it crosses or it stalls): a mean over such seeds says little, a count says what
happened. Before counting, it asks whether the toy can show the effect at all (the baseline's room) and whether a
seed that shows it can credit it to what the claim names (the variant's controls).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analysis_lib.stats.seed_stats import MARGIN

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
CONFOUNDED, NOT_TESTABLE = "confounded", "not testable here"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, CONFOUNDED, NOT_TESTABLE)
GREATER, ALIKE = "greater", "alike"
"""A claim's kind: A beats B (``greater``) or A and B do not differ (``alike``)."""
ROUNDING = 1e-9
"""A difference equal to the margin up to float rounding (accuracies are ratios of counts) counts as reaching it."""
BETTER, WORSE = "better", "worse"
"""Which side of A - B is the claim's baseline (the reference the variant is compared to): A or B."""
RULE = (
    f"Each claim is one paired effect A - B, measured on every seed. A seed **shows** a claim that A beats B when its "
    f"A - B is at least {100 * MARGIN:.0f} points, and a claim that A and B are alike when |A - B| is at most "
    f"{100 * MARGIN:.0f} points. In this order: **not testable here** when the claim's baseline leaves less than "
    f"{100 * MARGIN:.0f} points of room for the effect (mean over seeds: 100% minus B when B is the baseline, its "
    f"ceiling; A minus chance when A is, its floor); **confounded** when a seed that shows the effect fails one of the "
    f"variant's measured controls (on the control's test the variant, the side that is not the baseline, falls more "
    f"than {100 * MARGIN:.0f} points below the baseline on that seed), so the effect cannot be credited to what the "
    f"claim names; **reproduced** when every seed (at least two) shows it; **partly** when at least half of the seeds "
    f"(and at least one) do; **not reproduced** otherwise. The mean and its interval are shown beside the count, not "
    f"used by the rule."
)


def shows(kind: str, differences: Sequence[float]) -> np.ndarray:
    """Per seed, whether its paired difference A - B shows a claim of ``kind`` (by ``MARGIN``)."""
    differences = np.asarray(differences, dtype=float)
    if kind == ALIKE:
        return np.abs(differences) <= MARGIN + ROUNDING
    if kind == GREATER:
        return differences >= MARGIN - ROUNDING
    raise ValueError(f"unknown claim kind {kind!r}: expected {GREATER!r} or {ALIKE!r}")


def room(baseline: str, baseline_mean: float, chance: float) -> float:
    """How far A - B can reach given the baseline's mean: 1 - B when B is the baseline, A - chance when A is."""
    if baseline == WORSE:
        return 1.0 - baseline_mean
    if baseline == BETTER:
        return baseline_mean - chance
    raise ValueError(f"unknown baseline side {baseline!r}: expected {BETTER!r} or {WORSE!r}")


def control_passes(variant: Sequence[float], baseline: Sequence[float]) -> np.ndarray:
    """Per seed, whether the variant stays within ``MARGIN`` of the baseline on a control test (NaN: it fails)."""
    return np.asarray(variant, dtype=float) >= np.asarray(baseline, dtype=float) - MARGIN - ROUNDING


def verdict(
    kind: str, differences: Sequence[float], headroom: float, controls_pass: Sequence[bool] | None = None
) -> str:
    """The verdict of ``RULE`` on per-seed differences A - B, the baseline's ``headroom`` (``room``) and, per seed,
    whether the variant passes all its measured controls (None: it has none)."""
    if headroom < MARGIN:
        return NOT_TESTABLE
    seen = shows(kind, differences)
    if controls_pass is not None and (seen & ~np.asarray(controls_pass, dtype=bool)).any():
        return CONFOUNDED
    k, n = int(seen.sum()), len(seen)
    if n >= 2 and k == n:
        return REPRODUCED
    if k >= 1 and 2 * k >= n:
        return PARTLY
    return NOT_REPRODUCED
