"""Shared toy-chapter helpers: the scale guard and the ordered variant tables."""

import pandas as pd
import pytest

from analysis_lib.toy.toy_runs import ABOVE_CHANCE, seed_row, show, start_toy_chapter, variant_rows, variant_table


def test_toy_only_chapters_refuse_full_scale_with_the_reason():
    with pytest.raises(ValueError, match=r"chapter 2 runs at scale='toy' only \(got 'full'\): needs retraining"):
        start_toy_chapter("2", "full", 0, "needs retraining")
    assert start_toy_chapter("2", "toy", 0, "") > 0


def test_variant_tables_follow_the_given_order_with_seed_intervals():
    values = {"b": [0.3, 0.52, 0.54], "a": [0.9, 0.92, 0.94]}
    rows = [{"model": "m", "condition": c, "benchmark": "relations", "metric": "4-way individual", "seed": s,
             "value": v} for c, per_seed in values.items() for s, v in enumerate(per_seed)]  # fmt: skip
    metrics = pd.DataFrame(rows)
    assert list(dict.fromkeys(variant_rows(metrics, ["a", "b"]).condition)) == ["a", "b"]
    table = variant_table(metrics, ["a", "b"])
    assert table.condition.tolist() == ["a", "b"] and table["mean"].round(2).tolist() == [0.92, 0.45]
    assert (table.ci95_low < table["mean"]).all() and (table["mean"] < table.ci95_high).all()
    assert table["per seed"][0] == "90.0%, 92.0%, 94.0%" and table.chance.tolist() == [0.25, 0.25]
    assert table[ABOVE_CHANCE].tolist() == ["3 of 3", "2 of 3"]  # 30% is not 10 points above chance
    assert (table.ci95_low >= 0.3).all() and (table.ci95_high <= 0.94).all()  # bootstrap: within the seeds' range
    assert show(table.iloc[1].to_dict()).endswith("2 of 3 at least 10 points above chance)")


def test_seed_row_counts_seeds_above_chance_only_where_there_is_one():
    group = pd.DataFrame({"seed": [2, 0, 1], "value": [0.9, 0.3, 0.36]})
    row = seed_row(group, 0.25)
    assert row["per seed"] == "30.0%, 36.0%, 90.0%" and row[ABOVE_CHANCE] == "2 of 3"  # 35% clears 25% by 10 points
    assert ABOVE_CHANCE not in seed_row(group, None) and seed_row(group, None)["mean"] == pytest.approx(0.52)


def test_a_variant_budget_is_twice_the_steps_of_the_same_seeds_chapter_llava(monkeypatch, tmp_path):
    """``budgeted`` reads the baseline's training log of that seed (abandoned attempts counted), and the budget enters
    the variant's cache key, so a budgeted variant is never the unbudgeted one reused."""
    import analysis_lib.toy.toy_runs as toy_runs
    from analysis_lib.toy.toy_recipe import FROM_SCRATCH, toy_setup

    logs = {0: {"stages": [{"steps": 100}, {"steps": 700}], "abandoned": [[{"steps": 1500}]]},
            1: {"stages": [{"steps": 1200}]}}  # fmt: skip
    monkeypatch.setattr(toy_runs, "toy_llava_folder", lambda setup, seed, *a: (seed, True))
    monkeypatch.setattr(toy_runs, "training_log", lambda seed: logs[seed])
    baseline, variant = toy_setup(300, False), toy_setup(300, False, FROM_SCRATCH)
    assert [toy_runs.budgeted(variant, s, baseline).llava_train.step_budget for s in (0, 1)] == [4600, 2400]
    assert toy_runs.BUDGET_FACTOR == 2 and "2x the steps" in toy_runs.BUDGET_RULE
    assert variant.llava_spec(0) != toy_runs.budgeted(variant, 0, baseline).llava_spec(0)


def test_stalled_lines_name_each_seed_with_the_stage_and_what_ended_it():
    from analysis_lib.toy.toy_runs import stalled_lines

    columns = ["variant", "seed", "stage", "passed at", "target", "budget spent"]
    rows = [("v", 0, "list", 300.0, 0.98, False), ("v", 0, "instructions", None, 0.95, False),
            ("v", 1, "list", None, 0.98, True), ("w", 0, "instructions", 900.0, 0.95, False)]  # fmt: skip
    (line,) = stalled_lines(pd.DataFrame(rows, columns=columns))
    expected = "seed(s) 0 (instructions, cap), 1 (list, budget spent)."
    assert line == f"* v: stopped without passing its held-out check on {expected}"
