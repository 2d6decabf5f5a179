"""The claims scoreboard: the verdict rule, effects read from a chapter's tidy metrics, and claims that name
conditions the chapters really write."""

import dataclasses

import pandas as pd
import pytest

from analysis_lib.chapters import ch00_claims as ch00
from analysis_lib.core.results import REPO_ROOT
from analysis_lib.toy.toy_runs import headline

CLAIM = ch00.ClaimEffect(
    "9", "A beats B", "paper", "99_demo", "relation 4-way", ch00.Side("A", "a", "A"), ch00.Side("B", "b", "B")
)


def _metrics(a: list[float], b: list[float], test: tuple[str, str] = ("relations", "4-way individual")) -> pd.DataFrame:
    """Rows of two models on one test (relation 4-way unless given), one per seed."""
    rows = [{"model": m, "condition": c, "benchmark": test[0], "metric": test[1], "seed": s, "value": v}
            for m, c, values in (("A", "a", a), ("B", "b", b)) for s, v in enumerate(values)]  # fmt: skip
    return pd.DataFrame(rows)


def test_claim_row_reads_the_effect_per_seed():
    row = ch00.claim_row(CLAIM, _metrics([0.9, 0.8, 1.0], [0.3, 0.2, 0.25]), [0, 1, 2])
    effects = [0.6, 0.6, 0.75]
    assert row["effect"] == pytest.approx(sum(effects) / 3) and row["seeds"] == 3 and row["showing"] == 3
    assert row["ci95_low"] == pytest.approx(0.6) and row["ci95_high"] == pytest.approx(0.75)  # bootstrap: in range
    assert row["per seed"] == "+60.0, +60.0, +75.0" and row["verdict"] == "reproduced"
    assert row["share_low"] == pytest.approx(0.025 ** (1 / 3)) and row["share_high"] == 1.0
    only_two = ch00.claim_row(CLAIM, _metrics([0.9, 0.8, 1.0], [0.3, 0.2, 0.25]), [0, 2])
    assert only_two["seeds"] == 2 and only_two["effect"] == pytest.approx((0.6 + 0.75) / 2)
    assert ch00.claim_row(CLAIM, None, [0])["verdict"] == "not run"
    assert ch00.claim_row(CLAIM, _metrics([0.9], [0.3]), [5])["verdict"] == "not measured"


def test_bimodal_seeds_are_partly_and_a_ceiling_baseline_is_not_testable():
    bimodal = ch00.claim_row(CLAIM, _metrics([0.95, 0.95, 0.95, 0.25, 0.25], [0.25] * 5), [0, 1, 2, 3, 4])
    assert (bimodal["showing"], bimodal["seeds"], bimodal["verdict"]) == (3, 5, "partly")
    assert ch00.showing_text(bimodal).startswith("3 of 5 (")
    assert "**partly**, 3 of 5 seeds show it" in ch00.caveat_lines(pd.DataFrame([bimodal]))
    ceiling = ch00.claim_row(CLAIM, _metrics([0.97, 0.99, 0.96], [0.97, 0.99, 0.97]), [0, 1, 2])
    assert ceiling["verdict"] == "not testable here" and ceiling["room"] == pytest.approx(1 - (0.97 + 0.99 + 0.97) / 3)
    assert "points of room" in ch00.caveat_lines(pd.DataFrame([ceiling]))


def test_a_variant_failing_its_control_where_the_effect_shows_is_confounded():
    control = ch00.Control("the variant still reads attributes", test="attribute 4-way")
    claim = dataclasses.replace(CLAIM, baseline="better", controls=(control, ch00.Control("an unrun control")))
    attributes = ("attributes", "4-way individual")
    relations = _metrics([0.97, 0.99, 0.96], [0.25, 0.25, 0.25])
    metrics = pd.concat([relations, _metrics([0.99, 0.99, 0.99], [0.99, 0.42, 0.31], attributes)])
    row = ch00.claim_row(claim, metrics, [0, 1, 2])
    assert row["verdict"] == "confounded" and row["control failed on seeds"] == "1, 2"
    listed = ch00.controls_markdown((claim,), pd.DataFrame([row]))
    assert "**fails** on seed(s) 1, 2" in listed and "**not run in the toy yet**" in listed
    working = pd.concat([relations, _metrics([0.99, 0.99, 0.99], [0.99, 0.95, 0.98], attributes)])
    assert ch00.claim_row(claim, working, [0, 1, 2])["verdict"] == "reproduced"


def test_every_claim_names_conditions_its_chapter_writes():
    for claim in ch00.CLAIMS:
        path = REPO_ROOT / "results" / claim.chapter / "toy" / "metrics.csv"
        if not path.is_file():
            continue
        rows = headline(pd.read_csv(path))
        tests = [claim.test, *(control.test for control in claim.controls if control.test)]
        for side, test in ((side, test) for side in (claim.better, claim.worse) for test in tests):
            mine = rows[(rows.model == side.model) & (rows.condition == side.condition) & (rows.test == test)]
            assert len(mine), f"{claim.chapter} has no {side.model!r} / {side.condition!r} on {test!r}"


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
