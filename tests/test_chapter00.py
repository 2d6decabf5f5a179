"""The claims scoreboard: the verdict rule, effects read from a chapter's tidy metrics, and claims that name
conditions the chapters really write."""

import pandas as pd
import pytest

from analysis_lib.chapters import ch00_claims as ch00
from analysis_lib.results import REPO_ROOT
from analysis_lib.toy_runs import headline

CLAIM = ch00.ClaimEffect(
    "9", "A beats B", "paper", "99_demo", "relation 4-way", ch00.Side("A", "a", "A"), ch00.Side("B", "b", "B")
)


def _metrics(a: list[float], b: list[float]) -> pd.DataFrame:
    """Relation 4-way rows of two models, one per seed."""
    rows = [{"model": m, "condition": c, "benchmark": "relations", "metric": "4-way individual", "seed": s, "value": v}
            for m, c, values in (("A", "a", a), ("B", "b", b)) for s, v in enumerate(values)]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("kind", "mean", "low", "high", "seeds", "expected"),
    [
        ("greater", 0.30, 0.20, 0.40, 3, "reproduced"),
        ("greater", 0.30, -0.10, 0.70, 3, "partly"),  # big on average, but a seed disagrees
        ("greater", 0.05, 0.01, 0.09, 3, "partly"),  # consistent but small
        ("greater", 0.05, -0.02, 0.12, 3, "not reproduced"),
        ("greater", 0.30, 0.30, 0.30, 1, "partly"),  # one seed: no interval
        ("alike", 0.02, -0.05, 0.08, 3, "reproduced"),
        ("alike", 0.05, -0.20, 0.30, 3, "partly"),
        ("alike", 0.40, 0.30, 0.50, 3, "not reproduced"),
    ],
)
def test_verdict_rule(kind, mean, low, high, seeds, expected):
    assert ch00.verdict(kind, mean, low, high, seeds) == expected


def test_claim_row_reads_the_effect_per_seed():
    row = ch00.claim_row(CLAIM, _metrics([0.9, 0.8, 1.0], [0.3, 0.2, 0.25]), [0, 1, 2])
    effects = [0.6, 0.6, 0.75]
    assert row["effect"] == pytest.approx(sum(effects) / 3) and row["seeds"] == 3
    assert row["ci95_low"] < row["effect"] < row["ci95_high"] and row["verdict"] == "reproduced"
    only_two = ch00.claim_row(CLAIM, _metrics([0.9, 0.8, 1.0], [0.3, 0.2, 0.25]), [0, 2])
    assert only_two["seeds"] == 2 and only_two["effect"] == pytest.approx((0.6 + 0.75) / 2)
    assert ch00.claim_row(CLAIM, None, [0])["verdict"] == "not run"
    assert ch00.claim_row(CLAIM, _metrics([0.9], [0.3]), [5])["verdict"] == "not measured"


def test_every_claim_names_conditions_its_chapter_writes():
    for claim in ch00.CLAIMS:
        path = REPO_ROOT / "results" / claim.chapter / "toy" / "metrics.csv"
        if not path.is_file():
            continue
        rows = headline(pd.read_csv(path))
        for side in (claim.better, claim.worse):
            mine = rows[(rows.model == side.model) & (rows.condition == side.condition) & (rows.test == claim.test)]
            assert len(mine), f"{claim.chapter} has no {side.model!r} / {side.condition!r} on {claim.test!r}"


def test_scoreboard_marks_chapters_without_results(tmp_path):
    board = ch00.scoreboard((CLAIM,), "toy", tmp_path)
    assert list(board["verdict"]) == ["not run"]
    assert "not run yet" in ch00.chapter_findings(board)["99_demo"]
    folder = ch00.save_results(board, "toy", True, [0], tmp_path, 1.0)
    assert (folder / "scoreboard.csv").is_file() and folder.name == "toy-smoke"


def test_full_scale_section_says_when_there_are_no_full_results(tmp_path):
    assert "No chapter has full-scale results yet" in ch00.full_scale_section(tmp_path, [0, 1, 2])
    folder = tmp_path / ch00.CLAIMS[0].chapter / "full"
    folder.mkdir(parents=True)
    rows = _metrics([0.9, 0.8, 0.85], [0.5, 0.55, 0.6]).replace(
        {"A": ch00.CLAIMS[0].better.model, "B": ch00.CLAIMS[0].worse.model}
    )
    rows["condition"] = rows["model"].map(
        {
            ch00.CLAIMS[0].better.model: ch00.CLAIMS[0].better.condition,
            ch00.CLAIMS[0].worse.model: ch00.CLAIMS[0].worse.condition,
        }
    )
    rows.to_csv(folder / "metrics.csv", index=False)
    table = ch00.full_scale_section(tmp_path, [0, 1, 2])
    assert "| 1 |" in table and "**reproduced**" in table and "**not measured**" in table and "not run" in table
