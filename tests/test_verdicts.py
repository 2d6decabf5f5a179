"""The verdict rule on hand-made per-seed effects: every category, a bimodal outcome and a baseline at its ceiling."""

import numpy as np
import pytest

from analysis_lib.stats import verdicts as v

ROOM = 0.7  # a baseline with room to spare


@pytest.mark.parametrize(
    ("kind", "differences", "headroom", "controls", "expected"),
    [
        ("greater", [0.7, 0.72, 0.69, 0.71, 0.7], ROOM, None, v.REPRODUCED),
        ("greater", [0.7, 0.7, 0.7, 0.0, 0.0], ROOM, None, v.PARTLY),  # bimodal: 3 seeds cross, 2 stall
        ("greater", [0.7, 0.7, 0.0, 0.0, 0.0], ROOM, None, v.NOT_REPRODUCED),  # 2 of 5: fewer than half
        ("greater", [0.09, 0.08, 0.09], ROOM, None, v.NOT_REPRODUCED),  # consistent but under the margin
        ("greater", [0.3], ROOM, None, v.PARTLY),  # one seed cannot reproduce a claim
        ("greater", [0.0, -0.02, 0.01], 0.03, None, v.NOT_TESTABLE),  # baseline at 97%: 3 points of room
        ("greater", [0.4, 0.4, 0.4], 0.05, None, v.NOT_TESTABLE),  # room decides before the seeds are read
        ("greater", [0.72, 0.74, 0.71], ROOM, [True, False, False], v.CONFOUNDED),  # variant broken on seeds 1, 2
        ("greater", [0.72, 0.74, 0.0], ROOM, [True, True, False], v.PARTLY),  # fails only where no effect shows
        ("alike", [0.02, -0.05, 0.08], ROOM, None, v.REPRODUCED),
        ("alike", [0.02, 0.05, 0.3], ROOM, None, v.PARTLY),
        ("alike", [0.02, 0.4, 0.3], ROOM, None, v.NOT_REPRODUCED),
    ],
)
def test_verdict_rule(kind, differences, headroom, controls, expected):
    assert v.verdict(kind, differences, headroom, controls) == expected


def test_room_is_the_baselines_ceiling_or_floor():
    assert v.room(v.WORSE, 0.974, 0.25) == pytest.approx(0.026)  # B is the baseline: 100% - B
    assert v.room(v.BETTER, 0.30, 0.25) == pytest.approx(0.05)  # A is the baseline: A - chance
    with pytest.raises(ValueError, match="baseline side"):
        v.room("neither", 0.5, 0.25)


def test_shows_and_controls_per_seed():
    assert v.shows(v.GREATER, [0.975 - 0.875, 0.099, -0.5]).tolist() == [True, False, False]  # 10 points
    assert v.shows(v.ALIKE, [0.1, -0.1, 0.11]).tolist() == [True, True, False]
    assert v.control_passes([0.995, 0.42, np.nan], [0.998, 0.99, 0.99]).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="claim kind"):
        v.shows("less", [0.1])


def test_the_rule_states_every_category():
    for name in v.VERDICTS:
        assert f"**{name}**" in v.RULE
