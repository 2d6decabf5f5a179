"""Statistics over seeds: a bootstrap interval that is reproducible and never leaves the seeds' range, the exact
interval of a count of seeds, and the caveat below five seeds."""

import numpy as np
import pytest

from analysis_lib.stats import seed_stats as ss


def test_seed_interval_is_a_reproducible_percentile_bootstrap_within_the_seeds_range():
    bimodal = [0.7, 0.7, 0.7, 0.0, 0.0]
    mean, low, high = ss.seed_interval(bimodal)
    assert mean == pytest.approx(0.42) and 0.0 <= low < mean < high <= 0.7
    assert ss.seed_interval(bimodal) == (mean, low, high)
    near_ceiling = [1.0, 0.99, 0.2]  # a Student-t interval would pass 100%; the bootstrap stays in range
    assert ss.seed_interval(near_ceiling)[2] <= 1.0 and ss.seed_interval(near_ceiling)[1] >= 0.2
    assert ss.seed_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    assert ss.seed_interval([0.3]) == (0.3, 0.3, 0.3)


def test_share_interval_is_clopper_pearson():
    low, high = ss.share_interval(3, 5)
    assert low == pytest.approx(0.146633, abs=1e-5) and high == pytest.approx(0.947255, abs=1e-5)
    assert ss.share_interval(5, 5) == (pytest.approx(0.025 ** (1 / 5)), 1.0)  # exact: (alpha / 2) ** (1 / n)
    assert ss.share_interval(0, 3)[0] == 0.0


def test_counts_and_caveat():
    assert ss.seeds_above(np.array([0.2, 0.35, 0.9]), 0.35) == 2 and ss.k_of_n(2, 3) == "2 of 3"
    assert "limited validity" in ss.interval_caveat(3) and ss.interval_caveat(ss.MIN_SEEDS) == ""
